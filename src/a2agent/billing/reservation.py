"""Reserve, then settle (SPEC §6): the rule that bounds what a request may spend.

At admission a request reserves its maximum cost — input estimate × input rate + output cap ×
output rate — against the account's balance, atomically in the database (an ``UPDATE … WHERE
balance - reserved >= amount`` on ``accounts.reserved_micro``, in the same transaction as the
pending record). Settlement charges the real cost and releases the reservation in one
transaction; crash recovery settles and releases the same way. The balance itself moves only
at settlement, so balance = Σ ledger still holds; a reservation is a hold, not a charge.

The output cap is the caller's own ``max_tokens`` / ``max_completion_tokens`` /
``max_output_tokens`` (as sent upstream, after translation), else the default output cap
setting. A balance goes below zero only by estimation error (an input estimate below the
upstream's count, or an upstream that exceeds the cap it was given), never by the size or
number of requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from a2agent.api.errors import ApiError
from a2agent.billing.money import PER_TOKENS, Prices, fmt_usd

_CAP_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


class InsufficientBalance(Exception):
    """The account's available balance (balance − holds) cannot cover a reservation."""

    def __init__(self, available: int) -> None:
        super().__init__(f"available balance {available}")
        self.available = available


@dataclass(frozen=True)
class Reservation:
    amount: int  # micro-USD held until settlement
    input_tokens: int
    output_cap: int


def output_cap(body: dict[str, Any], default: int) -> int:
    """The most output tokens this request may produce, as the upstream will be told."""
    for name in _CAP_FIELDS:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def cap_field(caller_body: dict[str, Any]) -> str:
    """The name of the output cap in the caller's own request (for messages)."""
    for name in _CAP_FIELDS:
        if name in caller_body:
            return name
    return "max_tokens"


def plan_reservation(prices: Prices, input_tokens: int, upstream_body: dict[str, Any], *,
                     default_cap: int, output: bool = True) -> Reservation:
    """The hold for one request: ``output=False`` for requests without output (embeddings)."""
    return reserve_for(prices, input_tokens, output_cap(upstream_body, default_cap) if output else 0)


def reserve_for(prices: Prices, input_tokens: int, cap: int) -> Reservation:
    """Maximum cost, rounded up to a whole micro-USD (a hold must never be short)."""
    total = input_tokens * prices.input + cap * prices.output
    return Reservation(-(-total // PER_TOKENS), input_tokens, cap)


def affordable_cap(prices: Prices, input_tokens: int, available: int) -> int:
    """The largest output cap the available balance covers with this input (0 if none)."""
    if prices.output <= 0:
        return 0
    left = available * PER_TOKENS - input_tokens * prices.input
    return max(left // prices.output, 0)


def insufficient(prices: Prices, res: Reservation, available: int, cap_field: str) -> ApiError:
    """403 insufficient_balance saying what the balance affords."""
    covers = affordable_cap(prices, res.input_tokens, available)
    have = fmt_usd(max(available, 0))
    msg = (f"Insufficient balance: this request may cost up to {fmt_usd(res.amount)} "
           f"(about {res.input_tokens:,} input tokens and up to {res.output_cap:,} output tokens); "
           f"your available balance is {have}")
    if covers >= 1:
        msg += (f", which covers {cap_field} ≤ {covers:,} for this input. Lower {cap_field} "
                "or top up (Billing page, or redeem a code), then retry.")
    else:
        msg += (", which does not cover it. Top up (Billing page, or redeem a code) or shorten the "
                "request, then retry.")
    return ApiError(403, msg, code="insufficient_balance", err_type="permission_error",
                    param=cap_field if covers >= 1 else None)
