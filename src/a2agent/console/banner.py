"""The balance banner shown on every console page while an account cannot (or soon cannot)
make requests: balance at or below zero, or below the operator's low-balance threshold."""

from __future__ import annotations

from typing import Any

from a2agent.billing.money import MICRO
from a2agent.config import Settings
from a2agent.console.session import Viewer


def balance_banner(settings: Settings, viewer: Viewer | None) -> dict[str, Any] | None:
    """The banner's facts for this viewer (None = no banner; administrators get none)."""
    if viewer is None or viewer.is_admin:
        return None
    low = round(settings.low_balance_usd * MICRO)
    if viewer.balance_micro > 0 and viewer.balance_micro >= low:
        return None
    return {"balance": viewer.balance_micro, "empty": viewer.balance_micro <= 0, "low": low,
            "cards": settings.payments_enabled}
