"""Per-key controls chosen by the key's owner: disabled, expiry, spend cap, model allow-list.

They travel with the key lookup (read fresh from the database on every request, like
deletion), so a change made anywhere holds on the next request on every worker and instance.
Pure functions: the data-plane edge calls them and turns a refusal into the caller's error.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from a2agent.billing.money import fmt_usd

PERIODS = ("total", "monthly")


@dataclass(frozen=True)
class KeyControls:
    disabled: bool = False
    expires_at: dt.datetime | None = None
    spend_cap_micro: int | None = None
    spend_cap_period: str | None = None
    spent_micro: int = 0  # in the cap's period (total, or this calendar month in UTC)
    allowed_models: tuple[str, ...] | None = None  # None: every model of the catalogue

    @classmethod
    def from_row(cls, disabled: Any, expires_at: Any, cap: Any, period: Any, models: Any,
                 spent: Any) -> KeyControls:
        return cls(disabled=bool(disabled), expires_at=_utc(expires_at),
                   spend_cap_micro=None if cap is None else int(cap),
                   spend_cap_period=period, spent_micro=int(spent or 0),
                   allowed_models=parse_models(models))


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str


def _utc(value: dt.datetime | str | None) -> dt.datetime | None:
    """The driver's timestamp: aware on PostgreSQL, naive-UTC text on raw sqlite3."""
    if value is None:
        return None
    when = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if when.tzinfo is None:
        return when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)


def parse_models(raw: str | None) -> tuple[str, ...] | None:
    if not raw:
        return None
    value = json.loads(raw)
    return tuple(str(m) for m in value) if isinstance(value, list) and value else None


def key_refusal(c: KeyControls, now: dt.datetime | None = None) -> Refusal | None:
    """Why this key may not be used right now, if it may not (model aside)."""
    now = now or dt.datetime.now(dt.UTC)
    if c.expires_at is not None and c.expires_at <= now:
        return Refusal(401, "key_expired",
                       f"This API key expired on {c.expires_at:%Y-%m-%d %H:%M} UTC. Create a new "
                       "key in the console, or ask its owner to extend the expiry.")
    if c.disabled:
        return Refusal(403, "key_disabled",
                       "This API key is disabled by its owner. Enable it again on the console's "
                       "API Keys page, or use another key.")
    if c.spend_cap_micro is not None and c.spent_micro >= c.spend_cap_micro:
        scope = "this month" if c.spend_cap_period == "monthly" else "in total"
        return Refusal(403, "key_limit_reached",
                       f"This API key reached its spend cap of {fmt_usd(c.spend_cap_micro)} "
                       f"{scope}. Raise or remove the cap on the API Keys page, or use another key.")
    return None


def parse_expiry(text: str) -> dt.datetime:
    """``YYYY-MM-DD`` (the end of that day, UTC) or an ISO timestamp (UTC unless it says)."""
    text = text.strip()
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return dt.datetime.combine(day, dt.time(23, 59, 59), dt.UTC)
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"bad expiry {text!r}: use YYYY-MM-DD or an ISO timestamp") from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def model_allowed(c: KeyControls, model: str) -> bool:
    return c.allowed_models is None or model in c.allowed_models
