"""Money: integer micro-dollars, and the one rounding rule.

Rules
1. Every amount of money is an ``int`` of micro-dollars (1_000_000 == $1.00). Floats never
   carry money: prices are converted to exact integers once, when a price table is built.
2. Text in dollars (``"12.50"``, ``"$12.50"``, ``"$1,234.50"``, ``"0.000001"``) converts
   exactly, with integer arithmetic on the digits. Text finer than one micro-dollar (more than six
   decimals) is rejected rather than rounded, because an operator typing a limit means exactly
   what they typed. Negative amounts, signs, exponents, NaN/Infinity, non-ASCII digits and empty
   text are rejected too.
3. ``parse_usd`` reads what ``format_usd`` writes: ``parse_usd(format_usd(m)) == m`` for every
   ``m >= 0``. That is why thousands separators are accepted, but only in well-formed groups of
   three (``"1,234.50"``); ``"12,50"`` (a decimal comma) is rejected, never read as 1250.
4. THE rounding rule: a call's total cost is rounded *up* to a whole micro-dollar
   (:func:`ceil_div`), once per call, never per token category.
"""

from __future__ import annotations

import re
from typing import NewType

__all__ = ["MICROS_PER_DOLLAR", "Micros", "ceil_div", "format_usd", "parse_usd"]

Micros = NewType("Micros", int)

MICROS_PER_DOLLAR = 1_000_000
_DECIMALS = 6  # log10(MICROS_PER_DOLLAR)

# ASCII digits only ([0-9], not \d, which also matches e.g. Arabic-Indic digits). The whole part
# is plain digits or comma-grouped thousands as format_usd writes them; either part may be empty
# (".5", "5."), but not both (checked separately).
_USD_TEXT = re.compile(r"(?P<whole>[0-9]{1,3}(?:,[0-9]{3})+|[0-9]*)(?:\.(?P<frac>[0-9]*))?")


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer division rounding toward +infinity (``denominator`` > 0)."""
    return -(-numerator // denominator)


def parse_usd(text: str) -> Micros:
    """Parse a non-negative dollar amount into micro-dollars, exactly.

    Accepts surrounding whitespace, an optional leading ``$``, digits (optionally grouped by
    commas in threes) and at most six decimals: ``"12.50"``, ``"$12.50"`` and ``"$1,012.50"``
    give 12_500_000, 12_500_000 and 1_012_500_000. Raises ``ValueError`` with a message fit for
    a person on anything else (negative, NaN, exponent, too precise, empty, garbage).
    """
    raw = text.strip()
    body = raw[1:].strip() if raw.startswith("$") else raw
    if body.startswith("-") or raw.startswith("-"):
        raise ValueError(f"{text!r} is negative: amounts of money here are >= 0")
    match = _USD_TEXT.fullmatch(body)
    if match is None or not any(ch.isdigit() for ch in body):
        raise ValueError(f"not a dollar amount: {text!r} (expected e.g. 12.50 or $12.50)")
    frac = match["frac"] or ""
    if len(frac) > _DECIMALS:
        raise ValueError(
            f"{text!r} has more than six decimals: the smallest amount is one micro-dollar "
            "($0.000001)"
        )
    whole = int(match["whole"].replace(",", "") or "0")
    return Micros(whole * MICROS_PER_DOLLAR + int(frac.ljust(_DECIMALS, "0")))


def format_usd(micros: int) -> str:
    """Render micro-dollars as dollars: thousands separators, at least two decimals, more only
    when needed.

    ``format_usd(12_500_000) == "$12.50"``, ``format_usd(1) == "$0.000001"``,
    ``format_usd(1_234_000_000) == "$1,234.00"``; negative amounts keep their sign before the
    dollar sign. :func:`parse_usd` reads every non-negative result back exactly.
    """
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_DOLLAR)
    digits = f"{frac:06d}".rstrip("0")
    digits = digits.ljust(2, "0")
    return f"{sign}${whole:,}.{digits}"
