"""limits.money: exact dollar text <-> micro-dollars, and the rounding helper."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from limits.money import MICROS_PER_DOLLAR, ceil_div, format_usd, parse_usd

non_negative_micros = st.integers(min_value=0, max_value=10**18)


@pytest.mark.parametrize(
    ("text", "micros"),
    [
        ("12.50", 12_500_000),
        ("$12.50", 12_500_000),
        ("$ 12.50", 12_500_000),
        ("  12.5  ", 12_500_000),
        ("0", 0),
        ("$0.00", 0),
        ("0.000001", 1),
        ("1.000000", 1_000_000),
        ("12", 12_000_000),
        (".5", 500_000),
        ("5.", 5_000_000),
        ("007.10", 7_100_000),
        ("$1,234.50", 1_234_500_000),
        ("1,234,567", 1_234_567_000_000),
        ("999,999.999999", 999_999_999_999),
        ("123456789012.345678", 123_456_789_012_345_678),
        # 29 digits: Decimal arithmetic (28-digit context) would round this; we are exact.
        ("10000000000000000000000000001", 10_000_000_000_000_000_000_000_000_001_000_000),
    ],
)
def test_parse_usd_accepts(text: str, micros: int) -> None:
    assert parse_usd(text) == micros


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "$",
        ".",
        "$.",
        "-1",
        "-$1",
        "$-1",
        "-0.5",
        "+5",
        "1.0000001",
        "0.0000001",
        "1.0000000",  # seven decimals, even zeros: more than one micro-dollar of precision
        "1e3",
        "1E3",
        "1.5e-3",
        "NaN",
        "nan",
        "inf",
        "Infinity",
        "sNaN",
        "abc",
        "12.5.0",
        "12,50",  # a decimal comma is not read as 1250
        "1,2345",
        "1234,567",
        ",123",
        "1,,234",
        "1_000",
        "0x10",
        "$$5",
        "5$",
        "12.50 USD",
        "١٢",  # Arabic-Indic digits: str.isdigit() says yes, we say no
        "²",
        "１２",  # full-width digits
    ],
)
def test_parse_usd_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"dollar amount|negative|six decimals"):
        parse_usd(text)


def test_parse_usd_messages_name_the_problem() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_usd("-3")
    with pytest.raises(ValueError, match=r"more than six decimals.*\$0\.000001"):
        parse_usd("0.0000005")
    with pytest.raises(ValueError, match=r"'abc'.*12\.50"):
        parse_usd("abc")


@given(non_negative_micros)
def test_parse_usd_reads_back_format_usd(micros: int) -> None:
    assert parse_usd(format_usd(micros)) == micros


@given(
    whole=st.integers(min_value=0, max_value=10**15),
    frac=st.text(alphabet="0123456789", min_size=0, max_size=6),
    dollar=st.booleans(),
)
def test_parse_usd_is_exact(whole: int, frac: str, dollar: bool) -> None:
    text = ("$" if dollar else "") + str(whole) + ("." + frac if frac else "")
    expected = Fraction(Decimal(str(whole) + "." + (frac or "0"))) * MICROS_PER_DOLLAR
    assert expected.denominator == 1
    assert parse_usd(text) == expected


@given(
    whole=st.integers(min_value=0, max_value=10**6),
    frac=st.text(alphabet="0123456789", min_size=7, max_size=12),
)
def test_parse_usd_rejects_more_than_six_decimals(whole: int, frac: str) -> None:
    with pytest.raises(ValueError, match="six decimals"):
        parse_usd(f"{whole}.{frac}")


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_parse_usd_never_returns_a_wrong_amount(value: Decimal) -> None:
    """Whatever Decimal prints (exponents, NaN, signs): an exact answer or ValueError."""
    text = str(value)
    try:
        micros = parse_usd(text)
    except ValueError:
        return
    assert micros >= 0
    # Fractions, not Decimal arithmetic: Decimal rounds products to 28 digits.
    assert Fraction(micros) == Fraction(value) * MICROS_PER_DOLLAR


@given(st.text(max_size=20))
def test_parse_usd_never_crashes_otherwise(text: str) -> None:
    try:
        micros = parse_usd(text)
    except ValueError:
        return
    assert micros >= 0


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, "$0.00"),
        (1, "$0.000001"),
        (10_000, "$0.01"),
        (12_500_000, "$12.50"),
        (12_345_678, "$12.345678"),
        (1_234_000_000, "$1,234.00"),
        (1_000_000_000_000, "$1,000,000.00"),
        (-2_500_000, "-$2.50"),
        (-1, "-$0.000001"),
    ],
)
def test_format_usd(micros: int, text: str) -> None:
    assert format_usd(micros) == text


@given(st.integers(min_value=-(10**18), max_value=10**18))
def test_format_usd_shape(micros: int) -> None:
    text = format_usd(micros)
    decimals = text.split(".")[1]
    assert 2 <= len(decimals) <= 6
    assert text.startswith("-$") == (micros < 0)


@given(st.integers(), st.integers(min_value=1, max_value=10**12))
def test_ceil_div_rounds_toward_positive_infinity(numerator: int, denominator: int) -> None:
    assert ceil_div(numerator, denominator) == math.ceil(Fraction(numerator, denominator))
