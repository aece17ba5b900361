"""Monthly spend: the optional per-account limit (set by its owner), month-to-date spend and a
projection. Months are calendar months in UTC; the limit resets when the month turns.

Admission asks ``check_spend_limit`` only for accounts that set a limit: one indexed read of
this month's ``daily_usage`` rows. Like the balance, in-flight requests may take the spend a
little past the limit; the next request after that is refused.
"""

from __future__ import annotations

import calendar
import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from a2agent.api.errors import ApiError
from a2agent.billing.money import fmt_usd
from a2agent.store.db import Database
from a2agent.store.models import Account, DailyUsage


def month_start(today: dt.date) -> dt.date:
    return today.replace(day=1)


def next_month(today: dt.date) -> dt.date:
    days = calendar.monthrange(today.year, today.month)[1]
    return month_start(today) + dt.timedelta(days=days)


@dataclass(frozen=True)
class Insight:
    month_to_date: int  # micro-USD
    projected: int  # at this month's daily rate, for the whole month
    limit: int | None
    resets_on: dt.date

    @property
    def limit_used_pct(self) -> int | None:
        if not self.limit:
            return None
        return min(int(self.month_to_date * 100 // self.limit), 999)


def insight(month_to_date: int, today: dt.date, limit: int | None) -> Insight:
    days = calendar.monthrange(today.year, today.month)[1]
    projected = month_to_date * days // today.day
    return Insight(month_to_date, projected, limit, next_month(today))


async def month_spend(db: Database, account_id: int, today: dt.date) -> int:
    q = select(func.coalesce(func.sum(DailyUsage.cost_micro), 0)).where(
        DailyUsage.account_id == account_id, DailyUsage.day >= month_start(today))
    async with db.read_conn() as conn:
        return int(await conn.scalar(q) or 0)


async def set_limit(db: Database, account_id: int, limit_micro: int | None) -> None:
    if limit_micro is not None and limit_micro <= 0:
        raise ValueError("a monthly spend limit must be positive (or none)")
    async with db.write_conn() as conn:
        await conn.execute(update(Account).where(Account.id == account_id)
                           .values(spend_limit_micro=limit_micro))


async def check_spend_limit(hot: Any, account_id: int, limit: int | None) -> None:
    """403 ``spend_limit_reached`` once this month's spend has reached the account's limit."""
    if limit is None:
        return
    today = dt.datetime.now(dt.UTC).date()
    spent = await hot.month_spend(account_id, month_start(today))
    if spent >= limit:
        raise ApiError(
            403, f"Monthly spend limit reached: {fmt_usd(spent)} of {fmt_usd(limit)} this month. "
                 f"Raise or remove the limit on the Billing page, or wait until "
                 f"{next_month(today).isoformat()} (UTC).",
            code="spend_limit_reached", err_type="permission_error")
