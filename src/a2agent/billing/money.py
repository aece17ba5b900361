"""Integer money. 1 USD = 1_000_000 micro-USD. Prices are micro-USD per 1M tokens.

Rounding rule (the only one): a request's cost is the exact sum
``Σ tokens_k × rate_k`` (in micro-USD × 1e-6) rounded half-up to a whole micro-USD,
once per request. Every token is counted once: ``input`` excludes cached tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

MICRO = 1_000_000
PER_TOKENS = 1_000_000


class MoneyError(ValueError):
    pass


def usd_to_micro(value: str | int | float | Decimal, *, allow_negative: bool = False) -> int:
    """Parse a USD amount ("12.50", "-3", "0.000001") into micro-USD, exactly."""
    try:
        amount = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise MoneyError(f"not a USD amount: {value!r}") from None
    if not amount.is_finite():
        raise MoneyError(f"not a USD amount: {value!r}")
    micro = amount * MICRO
    if micro != micro.to_integral_value():
        raise MoneyError(f"more than 6 decimal places: {value!r}")
    if micro < 0 and not allow_negative:
        raise MoneyError(f"must not be negative: {value!r}")
    if abs(micro) > 10**15:
        raise MoneyError(f"amount too large: {value!r}")
    return int(micro)


def micro_to_usd(micro: int) -> str:
    """Decimal string with 6 places, e.g. 1500000 -> "1.500000"."""
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(int(micro)), MICRO)
    return f"{sign}{whole}.{frac:06d}"


def fmt_usd(micro: int, places: int = 2) -> str:
    """Human display: "$1.50"; small amounts keep enough places to be non-zero."""
    value = Decimal(int(micro)) / MICRO
    if micro and abs(value) < Decimal("0.01"):
        places = 6
    return f"{'-' if value < 0 else ''}${abs(value):,.{places}f}"


@dataclass(frozen=True)
class Prices:
    """Rates in micro-USD per 1M tokens."""

    input: int
    output: int
    cache_read: int
    cache_write: int
    price_id: int | None = None


def cost_micro(
    prices: Prices, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0
) -> int:
    total = (
        input_tokens * prices.input
        + output_tokens * prices.output
        + cache_read * prices.cache_read
        + cache_write * prices.cache_write
    )
    return (total + PER_TOKENS // 2) // PER_TOKENS
