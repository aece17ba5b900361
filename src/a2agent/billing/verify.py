"""`a2agent db verify`: recompute balances from the ledger and charges from request records."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from sqlalchemy import Row, select
from sqlalchemy.ext.asyncio import AsyncConnection

from a2agent.billing.money import Prices, cost_micro, micro_to_usd
from a2agent.store.db import Database
from a2agent.store.models import (
    Account,
    LedgerEntry,
    ModelPrice,
    Payment,
    RequestRecord,
    utcnow,
)

# a request still pending after this long was lost by its process (recovery settles it)
PENDING_GRACE = dt.timedelta(minutes=20)


async def verify(db: Database, pending_grace: dt.timedelta = PENDING_GRACE) -> list[str]:
    """Every inconsistency found, as one human-readable line each (empty = clean)."""
    problems: list[str] = []
    async with db.read_conn() as conn:
        accounts = {r.id: r for r in (await conn.execute(select(
            Account.id, Account.email, Account.balance_micro, Account.reserved_micro))).all()}
        problems += await _holds(conn, accounts, pending_grace)
        running: dict[int, int] = {}
        charges: dict[str, int] = {}
        stmt = select(
            LedgerEntry.id, LedgerEntry.account_id, LedgerEntry.kind, LedgerEntry.amount_micro,
            LedgerEntry.balance_after, LedgerEntry.request_id,
        ).order_by(LedgerEntry.id)
        for eid, account_id, kind, amount, after, request_id in (await conn.execute(stmt)).all():
            total = running.get(account_id, 0) + amount
            running[account_id] = total
            if total != after:
                problems.append(
                    f"ledger entry {eid} (account {account_id}): balance_after {micro_to_usd(after)} "
                    f"but entries sum to {micro_to_usd(total)}"
                )
            if kind == "charge":
                if not request_id:
                    problems.append(f"ledger entry {eid}: charge without a request id")
                elif request_id in charges:
                    problems.append(f"request {request_id}: charged more than once")
                else:
                    charges[request_id] = -amount
        for account_id, acc in accounts.items():
            total = running.get(account_id, 0)
            if total != acc.balance_micro:
                problems.append(
                    f"account {acc.email}: balance {micro_to_usd(acc.balance_micro)} "
                    f"but ledger sums to {micro_to_usd(total)}"
                )
        prices = {p.id: p for p in (await conn.execute(select(ModelPrice))).all()}
        records = await conn.stream(
            select(
                RequestRecord.id, RequestRecord.model, RequestRecord.price_id,
                RequestRecord.input_tokens, RequestRecord.output_tokens,
                RequestRecord.cache_read_tokens, RequestRecord.cache_write_tokens,
                RequestRecord.cost_micro, RequestRecord.created_at, RequestRecord.settled_at,
            ).where(RequestRecord.settled_at.is_not(None))
        )
        seen: set[str] = set()
        async for rid, model, price_id, i, o, cr, cw, cost, created, _settled in records:
            seen.add(rid)
            p = prices.get(price_id)
            if p is None:
                expected = 0
            else:
                if p.model_id != model:
                    problems.append(f"request {rid}: priced with {p.model_id}'s prices, not {model}'s")
                eff = p.effective_from
                if eff is not None and created is not None and _naive(eff) > _naive(created):
                    problems.append(f"request {rid}: price {p.id} was not yet in force at {created}")
                expected = cost_micro(
                    Prices(p.input_micro, p.output_micro, p.cache_read_micro, p.cache_write_micro), i, o, cr, cw
                )
            if expected != cost:
                problems.append(
                    f"request {rid}: cost {micro_to_usd(cost)} but tokens x price = {micro_to_usd(expected)}"
                )
            charged = charges.get(rid, 0)
            if charged != cost:
                problems.append(
                    f"request {rid}: cost {micro_to_usd(cost)} but ledger charged {micro_to_usd(charged)}"
                )
        for rid in charges.keys() - seen:
            problems.append(f"charge for request {rid} has no settled request record")
        problems += await _verify_payments(conn)
    return problems


async def _verify_payments(conn: AsyncConnection) -> list[str]:
    """Card payments: a paid one is credited exactly its amount by one ``payment`` entry of its
    own account and debited exactly its refunded amount; an unpaid one moved no money."""
    problems: list[str] = []
    moved: dict[tuple[int, str], tuple[int, int, set[int]]] = {}
    q = select(LedgerEntry.payment_id, LedgerEntry.kind, LedgerEntry.amount_micro,
               LedgerEntry.account_id).where(LedgerEntry.payment_id.is_not(None))
    for pid, kind, amount, account_id in (await conn.execute(q)).all():
        key = (int(pid or 0), str(kind))
        n, total, owners = moved.get(key, (0, 0, set()))
        moved[key] = (n + 1, total + amount, owners | {account_id})
    payments = select(Payment.id, Payment.account_id, Payment.status, Payment.amount_micro,
                      Payment.refunded_micro)
    for pid, account_id, status, amount, refunded in (await conn.execute(payments)).all():
        n, credited, owners = moved.pop((pid, "payment"), (0, 0, set()))
        _, debited, refund_owners = moved.pop((pid, "refund"), (0, 0, set()))
        expected = (1, amount, -refunded) if status == "paid" else (0, 0, 0)
        if (n, credited, debited) != expected:
            problems.append(
                f"payment {pid} ({status}): ledger has {n} credit(s) of {micro_to_usd(credited)} "
                f"and refunds of {micro_to_usd(-debited)}, expected {expected[0]} of "
                f"{micro_to_usd(expected[1])} and {micro_to_usd(-expected[2])}")
        if (owners | refund_owners) - {account_id}:
            problems.append(f"payment {pid}: ledger entries on another account")
    for (pid, kind), _ in moved.items():
        problems.append(f"ledger {kind} entries point to payment {pid}, which does not exist")
    return problems


async def _holds(conn: AsyncConnection, accounts: Mapping[int, Row[int, str, int, int]], grace: dt.timedelta) -> list[str]:
    """Each account's hold equals the holds of its unsettled requests; nothing stays pending
    past the grace period."""
    problems: list[str] = []
    held: dict[int, int] = {}
    cutoff = _naive(utcnow() - grace)
    rows = (await conn.execute(select(RequestRecord.id, RequestRecord.account_id, RequestRecord.reserved_micro,
                                      RequestRecord.created_at).where(RequestRecord.settled_at.is_(None)))).all()
    for rid, account_id, reserved, created in rows:
        held[account_id] = held.get(account_id, 0) + int(reserved or 0)
        if created is not None and _naive(created) < cutoff:
            problems.append(f"request {rid}: still pending since {created} (older than {grace}); "
                            "it was not settled")
    for account_id, acc in accounts.items():
        if int(acc.reserved_micro or 0) != held.get(account_id, 0):
            problems.append(f"account {acc.email}: {micro_to_usd(acc.reserved_micro)} held but its pending "
                            f"requests hold {micro_to_usd(held.get(account_id, 0))}")
    return problems


def _naive(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=None) if getattr(value, "tzinfo", None) else value
