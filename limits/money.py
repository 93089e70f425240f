"""Money: integer micro-dollars, and the one rounding rule.

Rules
1. Every amount of money is an ``int`` of micro-dollars (1_000_000 == $1.00). Floats never
   carry money: prices are converted to exact integers once, when a price table is built.
2. Text in dollars (``"12.50"``, ``"$12.50"``, ``"0.000001"``) converts exactly through
   ``Decimal``; text finer than one micro-dollar is rejected rather than rounded, because an
   operator typing a limit means exactly what they typed.
3. THE rounding rule: a call's total cost is rounded *up* to a whole micro-dollar
   (:func:`ceil_div`), once per call, never per token category.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import NewType

__all__ = ["MICROS_PER_DOLLAR", "Micros", "ceil_div", "format_usd", "parse_usd"]

Micros = NewType("Micros", int)

MICROS_PER_DOLLAR = 1_000_000


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer division rounding toward +infinity (``denominator`` > 0)."""
    return -(-numerator // denominator)


def parse_usd(text: str) -> Micros:
    """Parse a non-negative dollar amount into micro-dollars, exactly.

    Accepts an optional leading ``$``, digits, and at most six decimals. Raises ``ValueError``
    with a message fit for a person on anything else (negative, NaN, exponent, too precise).
    """
    raw = text.strip()
    body = raw[1:].strip() if raw.startswith("$") else raw
    if not body or not all(ch.isdigit() or ch == "." for ch in body) or body.count(".") > 1:
        raise ValueError(f"not a dollar amount: {text!r} (expected e.g. 12.50 or $12.50)")
    try:
        amount = Decimal(body)
    except InvalidOperation as exc:  # pragma: no cover - the character check above rejects these
        raise ValueError(f"not a dollar amount: {text!r}") from exc
    micros = amount * MICROS_PER_DOLLAR
    if micros != micros.to_integral_value():
        raise ValueError(f"{text!r} is finer than one micro-dollar ($0.000001)")
    return Micros(int(micros))


def format_usd(micros: int) -> str:
    """Render micro-dollars as dollars: at least two decimals, more only when needed.

    ``format_usd(12_500_000) == "$12.50"``, ``format_usd(1) == "$0.000001"``; negative amounts
    keep their sign before the dollar sign.
    """
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_DOLLAR)
    digits = f"{frac:06d}".rstrip("0")
    digits = digits.ljust(2, "0")
    return f"{sign}${whole:,}.{digits}"
