"""The request log: every request of a known key (refusals and failures included), filterable,
searchable by request id, paged by keyset, exportable as CSV, with a metadata-only detail view.

Pages walk the (account | key, time) indexes newest first with ``created_at < cursor`` and a
LIMIT, so the cost of a page does not grow with the number of records (no OFFSET).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from starlette.requests import Request

from a2agent.console.periods import Period, period_from
from a2agent.store.db import Database
from a2agent.store.models import RequestRecord

PER_PAGE = 50
CSV_MAX_ROWS = 1_000_000
STATUS_CLASSES = {
    "ok": "Succeeded",
    "refused": "Refused",
    "failed": "Failed",
    "pending": "In progress",
}
PROTOCOLS = {"openai": "OpenAI", "anthropic": "Anthropic"}
_R = RequestRecord
COLUMNS = (_R.id, _R.created_at, _R.account_id, _R.key_id, _R.model, _R.channel, _R.protocol,
           _R.stream, _R.status, _R.http_status, _R.error_type, _R.input_tokens, _R.output_tokens,
           _R.cache_read_tokens, _R.cache_write_tokens, _R.cost_micro, _R.latency_ms)


@dataclass(frozen=True)
class Filters:
    period: Period
    key_id: int | None = None
    model: str = ""
    status: str = ""
    protocol: str = ""
    account_id: int | None = None  # admin: one account; users: always their own

    def query(self, **extra: Any) -> str:
        return self.period.query(key=self.key_id, model=self.model, status=self.status,
                                 protocol=self.protocol, account=self.account_id, **extra)


def filters_from(request: Request, key_id: int | None, account_id: int | None) -> Filters:
    q = request.query_params
    status = q.get("status", "")
    protocol = q.get("protocol", "")
    return Filters(period=period_from(request, default="7d"), key_id=key_id,
                   model=q.get("model", "").strip()[:200],
                   status=status if status in STATUS_CLASSES else "",
                   protocol=protocol if protocol in PROTOCOLS else "", account_id=account_id)


def _where(q: Any, f: Filters, before: dt.datetime | None = None) -> Any:
    """The filters; ``before`` (a keyset cursor) replaces the period's upper bound, so the
    index range is exactly [start of period, cursor]."""
    lo = dt.datetime.combine(f.period.start, dt.time(), dt.UTC)
    hi = dt.datetime.combine(f.period.end + dt.timedelta(days=1), dt.time(), dt.UTC)
    q = q.where(_R.created_at >= lo)
    q = q.where(_R.created_at <= before) if before is not None and before < hi else q.where(
        _R.created_at < hi)
    if f.account_id is not None:
        q = q.where(_R.account_id == f.account_id)
    if f.key_id is not None:
        q = q.where(_R.key_id == f.key_id)
    if f.model:
        q = q.where(_R.model == f.model)
    if f.protocol:
        q = q.where(_R.protocol == f.protocol)
    if f.status == "failed":
        q = q.where(_R.status.not_in(("ok", "refused", "pending")))
    elif f.status:
        q = q.where(_R.status == f.status)
    return q


def encode_cursor(row: Any) -> str:
    return f"{row.created_at.astimezone(dt.UTC).isoformat()}~{row.id}"


def decode_cursor(raw: str | None) -> tuple[dt.datetime, str] | None:
    if not raw or "~" not in raw:
        return None
    stamp, _, rid = raw.partition("~")
    try:
        when = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)), rid[:40]


async def page(db: Database, f: Filters, before: tuple[dt.datetime, str] | None,
               limit: int = PER_PAGE) -> tuple[list[Any], str | None]:
    """One page newest first, and the cursor of the next (older) page if there is one."""
    q = _where(select(*COLUMNS), f, before[0] if before else None)
    q = q.order_by(_R.created_at.desc(), _R.id.desc()).limit(limit + 1)
    if before is not None:
        when, rid = before  # records of the cursor's own instant: only those after it
        q = q.where(or_(_R.created_at < when, _R.id < rid))
    async with db.read_conn() as conn:
        rows = list((await conn.execute(q)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


async def find(db: Database, request_id: str, account_id: int | None) -> Any:
    q = select(RequestRecord).where(RequestRecord.id == request_id.strip()[:40])
    if account_id is not None:
        q = q.where(RequestRecord.account_id == account_id)
    async with db.read() as s:
        return await s.scalar(q)


def attempts_of(record: Any) -> list[dict[str, Any]]:
    try:
        value = json.loads(record.attempts or "[]")
    except ValueError:
        return []
    return [a for a in value if isinstance(a, dict)] if isinstance(value, list) else []


CSV_HEADER = ("request_id", "time_utc", "account_id", "key_id", "key_name", "model", "channel",
              "protocol", "stream", "status", "http_status", "error", "input_tokens",
              "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd", "latency_ms")


async def csv_rows(db: Database, f: Filters, names: dict[int, dict[str, Any]]
                   ) -> AsyncIterator[bytes]:
    """The filtered log as CSV, newest first, read a page at a time (bounded memory)."""
    from a2agent.billing.money import micro_to_usd

    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(CSV_HEADER)
    sent = 0
    cursor = None
    while sent < CSV_MAX_ROWS:
        rows, nxt = await page(db, f, cursor, limit=1000)
        for r in rows:
            out.writerow((r.id, r.created_at.astimezone(dt.UTC).isoformat(), r.account_id,
                          r.key_id, names.get(r.key_id, {}).get("name", ""), r.model,
                          r.channel or "", r.protocol, int(bool(r.stream)), r.status,
                          r.http_status or "", r.error_type or "", r.input_tokens,
                          r.output_tokens, r.cache_read_tokens, r.cache_write_tokens,
                          micro_to_usd(r.cost_micro), r.latency_ms if r.latency_ms is not None
                          else ""))
        sent += len(rows)
        yield buf.getvalue().encode()
        buf.seek(0)
        buf.truncate()
        if nxt is None:
            break
        cursor = decode_cursor(nxt)
