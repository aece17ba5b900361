"""Usage read models over the daily roll-up (fast at any number of request records)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from a2agent.auth.keys import mask
from a2agent.billing.money import micro_to_usd
from a2agent.store.db import Database
from a2agent.store.models import ApiKey, DailyUsage, RequestRecord

_SUMS = (
    func.coalesce(func.sum(DailyUsage.requests), 0),
    func.coalesce(func.sum(DailyUsage.input_tokens), 0),
    func.coalesce(func.sum(DailyUsage.output_tokens), 0),
    func.coalesce(func.sum(DailyUsage.cache_read_tokens), 0),
    func.coalesce(func.sum(DailyUsage.cache_write_tokens), 0),
    func.coalesce(func.sum(DailyUsage.cost_micro), 0),
)
_NAMES = ("requests", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_micro")


def _row(values: Any) -> dict[str, int]:
    return {k: int(v or 0) for k, v in zip(_NAMES, values, strict=False)}


class UsageQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def key_summary(self, key_id: int) -> dict[str, Any]:
        today = dt.datetime.now(dt.UTC).date()
        month_start = today.replace(day=1)
        async with self.db.read_conn() as conn:
            key = (await conn.execute(select(ApiKey.name, ApiKey.prefix, ApiKey.last4, ApiKey.created_at,
                                             ApiKey.last_used_at).where(ApiKey.id == key_id))).first()
            total = _row((await conn.execute(select(*_SUMS).where(DailyUsage.key_id == key_id))).first())
            day = _row((await conn.execute(select(*_SUMS).where(DailyUsage.key_id == key_id,
                                                                  DailyUsage.day == today))).first())
            month = _row((await conn.execute(select(*_SUMS).where(DailyUsage.key_id == key_id,
                                                                    DailyUsage.day >= month_start))).first())
        out: dict[str, Any] = {
            "object": "key_usage",
            "key": {
                "name": key[0] if key else None,
                "masked": mask(key[1], key[2]) if key else None,
                "created": key[3].isoformat() if key and key[3] else None,
                "last_used": key[4].isoformat() if key and key[4] else None,
            },
        }
        for label, row in (("total", total), ("today", day), ("this_month", month)):
            out[label] = {**row, "total_tokens": row["input_tokens"] + row["output_tokens"]
                          + row["cache_read_tokens"] + row["cache_write_tokens"],
                          "cost_usd": micro_to_usd(row["cost_micro"])}
        out["spend_usd"] = micro_to_usd(total["cost_micro"])
        out["requests"] = total["requests"]
        return out

    async def summary(self, account_id: int | None, start: dt.date, end: dt.date,
                      group_by: str | None = None) -> list[dict[str, Any]]:
        """Sums per day / key / model over [start, end] for one account (None = everyone)."""
        cols: list[Any] = []
        if group_by == "day":
            cols = [DailyUsage.day]
        elif group_by == "key":
            cols = [DailyUsage.key_id]
        elif group_by == "model":
            cols = [DailyUsage.model]
        elif group_by == "account":
            cols = [DailyUsage.account_id]
        q = select(*cols, *_SUMS).where(DailyUsage.day >= start, DailyUsage.day <= end)
        if account_id is not None:
            q = q.where(DailyUsage.account_id == account_id)
        if cols:
            q = q.group_by(*cols).order_by(*cols)
        async with self.db.read_conn() as conn:
            rows = (await conn.execute(q)).all()
        out = []
        for r in rows:
            item: dict[str, Any] = _row(r[len(cols):])
            if cols:
                item[group_by or ""] = r[0]
            out.append(item)
        return out

    async def recent_requests(self, account_id: int | None, *, limit: int = 50, offset: int = 0,
                              key_id: int | None = None) -> list[Any]:
        q = select(RequestRecord).order_by(RequestRecord.created_at.desc()).limit(limit).offset(offset)
        if account_id is not None:
            q = q.where(RequestRecord.account_id == account_id)
        if key_id is not None:
            q = q.where(RequestRecord.key_id == key_id)
        async with self.db.read() as s:
            return list((await s.scalars(q)).all())
