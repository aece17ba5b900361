"""The Billing page's ledger as people read it.

Every entry that is not a request charge is its own row. Request charges are grouped into one
row per run of consecutive charges within a UTC day (a top-up in the middle of a day splits
that day's charges in two), so each row's "balance after" is the exact balance after its last
entry. A charge row expands into its keys. Runs are computed in SQL with a window function
(SQLite ≥ 3.25 and PostgreSQL), paged by the id of each row's last entry.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import case, func, literal, select

from a2agent.billing.money import micro_to_usd
from a2agent.store.db import Database
from a2agent.store.models import DailyUsage, LedgerEntry, RequestRecord

KINDS = {"payment": "Payments", "grant": "Grants", "topup": "Top-ups", "redeem": "Codes",
         "refund": "Refunds", "adjustment": "Adjustments", "charge": "Charges"}


@dataclass
class KeyShare:
    key_id: int
    requests: int
    amount: int


@dataclass
class LedgerRow:
    kind: str
    first_id: int
    last_id: int
    count: int
    amount: int
    balance_after: int = 0
    created_at: dt.datetime | None = None
    day: dt.date | None = None
    note: str | None = None
    reference: str | None = None
    payment_id: int | None = None
    request_id: str | None = None
    keys: list[KeyShare] = field(default_factory=list)


def _utc_day(db: Database, column: Any) -> Any:
    if db.is_sqlite:  # stored as naive UTC text
        return func.substr(column, 1, 10)
    return func.date(func.timezone("UTC", column))


def _as_date(value: Any) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


async def rows(db: Database, account_id: int, *, kind: str | None = None, page: int = 1,
               per_page: int = 25) -> tuple[list[LedgerRow], bool]:
    le = LedgerEntry
    is_charge = case((le.kind == "charge", 1), else_=0)
    inner = (
        select(le.id, le.kind, le.amount_micro, is_charge.label("c"),
               func.sum(1 - is_charge).over(order_by=le.id).label("seg"),
               _utc_day(db, le.created_at).label("day"))
        .where(le.account_id == account_id)
        .subquery()
    )
    group_kind = func.max(inner.c.kind)
    last = func.max(inner.c.id)
    q = (select(func.min(inner.c.id), last, func.count(), func.sum(inner.c.amount_micro),
                group_kind, inner.c.day)
         .group_by(inner.c.seg, inner.c.c, inner.c.day)
         .order_by(last.desc()).limit(per_page + 1).offset((page - 1) * per_page))
    if kind:
        q = q.having(group_kind == kind)
    async with db.read_conn() as conn:
        groups = (await conn.execute(q)).all()
        has_next = len(groups) > per_page
        out = [LedgerRow(kind=g[4], first_id=g[0], last_id=g[1], count=int(g[2]), amount=int(g[3]),
                         day=_as_date(g[5])) for g in groups[:per_page]]
        if not out:
            return [], False
        lasts = {r.last_id: r for r in out}
        for e in (await conn.execute(select(le).where(le.id.in_(lasts)))).all():
            r = lasts[e.id]
            r.balance_after, r.created_at = int(e.balance_after), e.created_at
            if r.kind != "charge":
                r.note, r.reference, r.payment_id, r.request_id = (e.note, e.reference,
                                                                   e.payment_id, e.request_id)
        charge_rows = [r for r in out if r.kind == "charge"]
        if charge_rows:
            await _key_shares(conn, account_id, charge_rows)
    return out, has_next


async def _key_shares(conn: Any, account_id: int, charge_rows: list[LedgerRow]) -> None:
    le, rr = LedgerEntry, RequestRecord
    which = case(*[(le.id.between(r.first_id, r.last_id), literal(i))
                   for i, r in enumerate(charge_rows)], else_=literal(-1)).label("g")
    q = (select(which, rr.key_id, func.count(), func.sum(le.amount_micro))
         .join(rr, rr.id == le.request_id)
         .where(le.account_id == account_id, le.kind == "charge",
                le.id.between(min(r.first_id for r in charge_rows),
                              max(r.last_id for r in charge_rows)))
         .group_by(which, rr.key_id))
    for g, key_id, n, amount in (await conn.execute(q)).all():
        if 0 <= g < len(charge_rows):
            charge_rows[g].keys.append(KeyShare(int(key_id), int(n), int(amount)))
    for r in charge_rows:
        r.keys.sort(key=lambda k: k.amount)


# ---- CSV -------------------------------------------------------------------------------------
def _line(values: list[Any]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(values)
    return buf.getvalue()


async def ledger_csv(db: Database, account_id: int) -> AsyncIterator[str]:
    """Every entry, oldest first, amounts exact in USD (6 decimals)."""
    le = LedgerEntry
    yield _line(["entry_id", "time_utc", "kind", "amount_usd", "balance_after_usd",
                 "request_id", "payment_id", "stripe_reference", "note"])
    q = (select(le.id, le.created_at, le.kind, le.amount_micro, le.balance_after, le.request_id,
                le.payment_id, le.reference, le.note)
         .where(le.account_id == account_id).order_by(le.id))
    async with db.read_conn() as conn:
        result = await conn.stream(q)
        async for r in result:
            yield _line([r.id, r.created_at.isoformat(), r.kind, micro_to_usd(r.amount_micro),
                         micro_to_usd(r.balance_after), r.request_id or "", r.payment_id or "",
                         r.reference or "", r.note or ""])


async def usage_csv(db: Database, account_id: int, names: dict[int, dict[str, Any]]
                    ) -> AsyncIterator[str]:
    """The daily roll-up per key and model, oldest first."""
    d = DailyUsage
    yield _line(["day", "key_id", "key_name", "model", "requests", "errors", "input_tokens",
                 "output_tokens", "cache_read_tokens", "cache_write_tokens", "cost_usd"])
    q = (select(d.day, d.key_id, d.model, d.requests, d.errors, d.input_tokens, d.output_tokens,
                d.cache_read_tokens, d.cache_write_tokens, d.cost_micro)
         .where(d.account_id == account_id).order_by(d.day, d.key_id, d.model))
    async with db.read_conn() as conn:
        result = await conn.stream(q)
        async for r in result:
            name = names.get(r.key_id, {}).get("name", "")
            yield _line([_as_date(r.day).isoformat(), r.key_id, name, r.model, r.requests,
                         r.errors, r.input_tokens, r.output_tokens, r.cache_read_tokens,
                         r.cache_write_tokens, micro_to_usd(r.cost_micro)])
