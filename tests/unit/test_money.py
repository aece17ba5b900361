"""Unit tier: integer money and the one rounding rule."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from a2agent.billing.money import (
    MoneyError,
    Prices,
    cost_micro,
    fmt_usd,
    micro_to_usd,
    usd_to_micro,
)


@pytest.mark.parametrize("text, micro", [
    ("12.50", 12_500_000), ("0.000001", 1), ("3", 3_000_000), (" 1.5 ", 1_500_000), (0, 0),
])
def test_usd_to_micro_is_exact(text: str, micro: int) -> None:
    assert usd_to_micro(text) == micro


@pytest.mark.parametrize("text", ["0.0000001", "-1", "abc", "inf", "NaN", "1e20", ""])
def test_usd_to_micro_refuses(text: str) -> None:
    with pytest.raises(MoneyError):
        usd_to_micro(text)


def test_negative_amounts_only_when_allowed() -> None:
    assert usd_to_micro("-2.5", allow_negative=True) == -2_500_000


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_micro_round_trips_through_text(micro: int) -> None:
    assert usd_to_micro(micro_to_usd(micro), allow_negative=True) == micro


def test_display_keeps_small_amounts_visible() -> None:
    assert fmt_usd(1_500_000) == "$1.50"
    assert fmt_usd(8_238) == "$0.008238"
    assert fmt_usd(-2_000_000) == "-$2.00"


def test_cost_rounds_half_up_once_per_request() -> None:
    prices = Prices(input=150_000, output=600_000, cache_read=75_000, cache_write=187_500)
    # 10 * 0.15 + 3 * 0.6 + 4 * 0.075 + 2 * 0.1875 = 1.5 + 1.8 + 0.3 + 0.375 = 3.975 µ$ -> 4
    assert cost_micro(prices, 10, 3, 4, 2) == 4
    assert cost_micro(Prices(500_000, 0, 0, 0), 1, 0) == 1  # exactly half rounds up
    assert cost_micro(Prices(499_999, 0, 0, 0), 1, 0) == 0


@given(st.integers(0, 10**7), st.integers(0, 10**7), st.integers(0, 10**8), st.integers(0, 10**8))
def test_cost_matches_exact_decimal_arithmetic(i: int, o: int, pin: int, pout: int) -> None:
    exact = (Decimal(i) * pin + Decimal(o) * pout) / 1_000_000
    assert cost_micro(Prices(pin, pout, 0, 0), i, o) == int(exact + Decimal("0.5"))
