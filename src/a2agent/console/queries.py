"""Read models for the console pages.

Aggregates come only from the ``daily_usage`` roll-up (one row per day × account × key ×
model), so they cost the same at a thousand or a billion request records. Lists of requests
use the (account, time) / (key, time) indexes with a LIMIT.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update

from a2agent.store.db import Database
from a2agent.store.models import Account, ApiKey, AppSetting, DailyUsage, RequestRecord

METRICS = ("requests", "errors", "input_tokens", "output_tokens", "cache_read_tokens",
           "cache_write_tokens", "cost_micro")
_SUMS = tuple(func.coalesce(func.sum(getattr(DailyUsage, m)), 0) for m in METRICS)


def _sums(values: Any) -> dict[str, int]:
    row = {m: int(v or 0) for m, v in zip(METRICS, values, strict=False)}
    row["tokens"] = (row["input_tokens"] + row["output_tokens"] + row["cache_read_tokens"]
                     + row["cache_write_tokens"])
    return row


def empty() -> dict[str, int]:
    return _sums([0] * len(METRICS))


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


# ---- roll-up aggregates ---------------------------------------------------------------------------
async def grouped(db: Database, column: Any, *, account_id: int | None, start: dt.date,
                  end: dt.date, key_id: int | None = None) -> list[tuple[Any, dict[str, int]]]:
    """Sums per value of ``column`` (None = one total row) over [start, end]."""
    cols = [column] if column is not None else []
    q = select(*cols, *_SUMS).where(DailyUsage.day >= start, DailyUsage.day <= end)
    if account_id is not None:
        q = q.where(DailyUsage.account_id == account_id)
    if key_id is not None:
        q = q.where(DailyUsage.key_id == key_id)
    if cols:
        q = q.group_by(*cols)
    async with db.read_conn() as conn:
        rows = (await conn.execute(q)).all()
    if not cols:
        return [(None, _sums(rows[0]))] if rows else [(None, empty())]
    return [(r[0], _sums(r[1:])) for r in rows]


async def total(db: Database, *, account_id: int | None, start: dt.date, end: dt.date,
                key_id: int | None = None) -> dict[str, int]:
    return (await grouped(db, None, account_id=account_id, start=start, end=end, key_id=key_id))[0][1]


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))


async def daily(db: Database, *, account_id: int | None, start: dt.date, end: dt.date,
                key_id: int | None = None) -> list[dict[str, Any]]:
    """One entry per calendar day in [start, end], zeros included (what a chart wants)."""
    rows = {_as_date(d): v for d, v in await grouped(db, DailyUsage.day, account_id=account_id,
                                                      start=start, end=end, key_id=key_id)}
    out = []
    day = start
    while day <= end:
        out.append({"day": day, **rows.get(day, empty())})
        day += dt.timedelta(days=1)
    return out


async def key_totals(db: Database, account_id: int) -> dict[int, dict[str, int]]:
    """All-time requests / tokens / spend per key of one account, in one query."""
    q = (select(DailyUsage.key_id, *_SUMS).where(DailyUsage.account_id == account_id)
         .group_by(DailyUsage.key_id))
    async with db.read_conn() as conn:
        return {r[0]: _sums(r[1:]) for r in (await conn.execute(q)).all()}


async def key_names(db: Database, account_id: int | None, key_ids: set[int] | None = None
                    ) -> dict[int, dict[str, Any]]:
    q = select(ApiKey.id, ApiKey.name, ApiKey.prefix, ApiKey.last4, ApiKey.deleted_at,
               ApiKey.account_id)
    if account_id is not None:
        q = q.where(ApiKey.account_id == account_id)
    if key_ids is not None:
        if not key_ids:
            return {}
        q = q.where(ApiKey.id.in_(key_ids))
    async with db.read_conn() as conn:
        rows = (await conn.execute(q)).all()
    return {r.id: {"name": r.name, "masked": f"{r.prefix}…{r.last4}", "deleted": r.deleted_at is not None,
                   "account_id": r.account_id} for r in rows}


async def owned_key(db: Database, account_id: int, key_id: int) -> bool:
    q = select(ApiKey.id).where(ApiKey.id == key_id, ApiKey.account_id == account_id)
    async with db.read_conn() as conn:
        return (await conn.execute(q)).first() is not None


# ---- request list -------------------------------------------------------------------------------
@dataclass
class RequestPage:
    rows: list[Any] = field(default_factory=list)
    page: int = 1
    per_page: int = 50
    has_next: bool = False


async def recent_requests(db: Database, *, account_id: int, start: dt.date, end: dt.date,
                          key_id: int | None = None, page: int = 1, per_page: int = 50) -> RequestPage:
    """Metadata of requests in [start, end], newest first, via the (account|key, time) index."""
    lo = dt.datetime.combine(start, dt.time(), dt.UTC)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
    r = RequestRecord
    q = (select(r.id, r.created_at, r.key_id, r.account_id, r.model, r.protocol, r.stream, r.status,
                r.http_status, r.input_tokens, r.output_tokens, r.cache_read_tokens,
                r.cache_write_tokens, r.cost_micro, r.latency_ms, r.channel)
         .where(r.created_at >= lo, r.created_at < hi)
         .order_by(r.created_at.desc())
         .limit(per_page + 1).offset((page - 1) * per_page))
    q = q.where(r.account_id == account_id)  # always one account: (account, time) index
    if key_id is not None:
        q = q.where(r.key_id == key_id)
    async with db.read_conn() as conn:
        rows = list((await conn.execute(q)).all())
    return RequestPage(rows=rows[:per_page], page=page, per_page=per_page,
                       has_next=len(rows) > per_page)


# ---- accounts (admin) ----------------------------------------------------------------------------
async def account_extras(db: Database, account_ids: list[int], since: dt.date
                         ) -> tuple[dict[int, int], dict[int, dict[str, int]]]:
    """(live key count, usage since ``since``) per account, two grouped queries."""
    if not account_ids:
        return {}, {}
    kq = (select(ApiKey.account_id, func.count()).where(ApiKey.account_id.in_(account_ids),
                                                         ApiKey.deleted_at.is_(None))
          .group_by(ApiKey.account_id))
    uq = (select(DailyUsage.account_id, *_SUMS)
          .where(DailyUsage.account_id.in_(account_ids), DailyUsage.day >= since)
          .group_by(DailyUsage.account_id))
    async with db.read_conn() as conn:
        keys = {r[0]: int(r[1]) for r in (await conn.execute(kq)).all()}
        usage = {r[0]: _sums(r[1:]) for r in (await conn.execute(uq)).all()}
    return keys, usage


async def emails(db: Database, account_ids: set[int]) -> dict[int, str]:
    if not account_ids:
        return {}
    async with db.read_conn() as conn:
        rows = (await conn.execute(select(Account.id, Account.email)
                                   .where(Account.id.in_(account_ids)))).all()
    return {r[0]: r[1] for r in rows}


async def clear_limits(db: Database, account_id: int, *, rpm: bool, tpm: bool) -> None:
    """Back to the gateway defaults (NULL); Accounts.set_limits only sets numbers."""
    values: dict[str, None] = {}
    if rpm:
        values["rpm_limit"] = None
    if tpm:
        values["tpm_limit"] = None
    if values:
        async with db.write() as s:
            await s.execute(update(Account).where(Account.id == account_id).values(**values))


# ---- settings --------------------------------------------------------------------------------------
SIGNUP_KEY = "signup_enabled"


async def signup_enabled(db: Database, default: bool) -> bool:
    async with db.read() as s:
        value = await s.scalar(select(AppSetting.value).where(AppSetting.key == SIGNUP_KEY))
    return default if value is None else value == "true"


async def set_signup_enabled(db: Database, enabled: bool) -> None:
    async with db.write() as s:
        await s.merge(AppSetting(key=SIGNUP_KEY, value="true" if enabled else "false"))
