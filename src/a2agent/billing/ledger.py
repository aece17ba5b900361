"""The only code that changes a balance.

Every change is one transaction that moves ``accounts.balance_micro`` with an atomic
``UPDATE … RETURNING`` and appends a ledger entry carrying the balance after it, so the
balance always equals the sum of the account's entries.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from a2agent.auth.accounts import NotFound
from a2agent.auth.keys import KeyHasher, generate_code, normalize_code
from a2agent.billing.money import Prices, cost_micro
from a2agent.billing.reservation import InsufficientBalance
from a2agent.store.db import Database
from a2agent.store.hotpath import HoldRefused, HotPath, Settlement
from a2agent.store.models import (
    Account,
    LedgerEntry,
    RedemptionCode,
    RequestRecord,
    utcnow,
)

LEDGER_KINDS = ("topup", "charge", "adjustment", "refund", "redeem", "payment", "grant")


class CodeError(ValueError):
    pass


@dataclass
class Outcome:
    """How a request ended, as settlement needs it. Token counts are normalised
    (``input_tokens`` excludes cached tokens)."""

    status: str  # ok | upstream_error | timeout | client_disconnect | error | shutdown | recovered
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    usage_source: str = "none"  # upstream | counted | estimate | none | recovered
    http_status: int | None = None
    error_type: str | None = None
    channel: str | None = None
    upstream_protocol: str | None = None
    latency_ms: int | None = None
    ttfb_ms: int | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    recovered: bool = False


@dataclass(frozen=True)
class PendingRequest:
    request_id: str
    account_id: int
    key_id: int
    model: str
    prices: Prices


class Ledger:
    def __init__(self, db: Database, hasher: KeyHasher, hot: HotPath) -> None:
        self.db = db
        self.hasher = hasher
        self.hot = hot

    # ---- balance moves --------------------------------------------------------------------
    @staticmethod
    async def _move(conn: AsyncConnection, account_id: int, amount: int, kind: str, *,
                    request_id: str | None = None, note: str | None = None,
                    payment_id: int | None = None, reference: str | None = None) -> int:
        """Inside a transaction: change the balance and append the entry. Returns balance after."""
        if kind not in LEDGER_KINDS:
            raise ValueError(f"unknown ledger kind {kind}")
        after = await conn.scalar(
            update(Account)
            .where(Account.id == account_id)
            .values(balance_micro=Account.balance_micro + amount)
            .returning(Account.balance_micro)
        )
        if after is None:
            raise NotFound(f"no account with id {account_id}")
        await conn.execute(
            insert(LedgerEntry).values(
                account_id=account_id,
                kind=kind,
                amount_micro=amount,
                balance_after=after,
                request_id=request_id,
                note=note,
                payment_id=payment_id,
                reference=reference,
                created_at=utcnow(),
            )
        )
        return int(after)

    async def adjust(self, account_id: int, amount_micro: int, note: str | None = None) -> int:
        """Admin top-up (positive → ``topup``) or adjustment (negative → ``adjustment``)."""
        if amount_micro == 0:
            raise ValueError("amount must not be zero")
        kind = "topup" if amount_micro > 0 else "adjustment"
        async with self.db.write_conn() as conn:
            return await self._move(conn, account_id, amount_micro, kind, note=(note or None))

    async def grant(self, account_id: int, amount_micro: int, note: str) -> int:
        """An operator-set credit (the sign-up credit): kind ``grant``."""
        if amount_micro <= 0:
            raise ValueError("a grant must be positive")
        async with self.db.write_conn() as conn:
            return await self._move(conn, account_id, amount_micro, "grant", note=note)

    async def refund(self, account_id: int, amount_micro: int, request_id: str, note: str) -> int:
        if amount_micro <= 0:
            raise ValueError("refund must be positive")
        async with self.db.write_conn() as conn:
            return await self._move(conn, account_id, amount_micro, "refund", note=note)

    # ---- redemption codes -----------------------------------------------------------------
    async def create_codes(self, amount_micro: int, count: int = 1) -> list[str]:
        if amount_micro <= 0:
            raise ValueError("code amount must be positive")
        if not 1 <= count <= 1000:
            raise ValueError("count must be between 1 and 1000")
        codes = [generate_code() for _ in range(count)]
        async with self.db.write_conn() as conn:
            for code in codes:
                await conn.execute(
                    insert(RedemptionCode).values(
                        digest=self.hasher.digest(code),
                        prefix=code[:9],
                        amount_micro=amount_micro,
                        created_at=utcnow(),
                    )
                )
        return codes

    async def redeem(self, account_id: int, code: str) -> int:
        """Credit a code once. The conditional UPDATE makes concurrent attempts race safely:
        exactly one sees rowcount 1. Returns the amount credited."""
        digest = self.hasher.digest(normalize_code(code))
        async with self.db.write_conn() as conn:
            row = (
                await conn.execute(
                    update(RedemptionCode)
                    .where(RedemptionCode.digest == digest, RedemptionCode.redeemed_at.is_(None))
                    .values(redeemed_by=account_id, redeemed_at=utcnow())
                    .returning(RedemptionCode.amount_micro, RedemptionCode.prefix)
                )
            ).first()
            if row is None:
                raise CodeError("This code is invalid or has already been redeemed.")
            await self._move(conn, account_id, int(row[0]), "redeem", note=f"code {row[1]}…")
            return int(row[0])

    async def list_codes(self, limit: int = 200) -> list[RedemptionCode]:
        async with self.db.read() as s:
            q = select(RedemptionCode).order_by(RedemptionCode.id.desc()).limit(limit)
            return list((await s.scalars(q)).all())

    # ---- requests ---------------------------------------------------------------------------
    async def open_request(
        self,
        pending: PendingRequest,
        *,
        protocol: str,
        stream: bool,
        client_ip: str | None,
        input_estimate: int,
        instance_id: str,
        reserved: int = 0,
    ) -> None:
        """Write the pending record at admission, so a crash can still be settled later, and
        hold ``reserved`` micro-USD of the balance in the same transaction (see
        billing/reservation.py). Raises InsufficientBalance when the balance less the other
        holds cannot cover it; then nothing is written."""
        try:
            await self.hot.open_request({
                "id": pending.request_id, "account_id": pending.account_id, "key_id": pending.key_id,
                "model": pending.model, "protocol": protocol, "stream": stream, "client_ip": client_ip,
                "input_estimate": input_estimate, "price_id": pending.prices.price_id,
                "created_at": utcnow(), "instance_id": instance_id, "reserved": max(int(reserved), 0),
            })
        except HoldRefused as exc:
            raise InsufficientBalance(exc.available) from None

    async def note_progress(self, request_id: str, output_tokens: int) -> None:
        """A stream's relayed output so far, on its pending record (charged if it is recovered)."""
        await self.hot.progress(request_id, output_tokens)

    async def settle(self, pending: PendingRequest, outcome: Outcome) -> int | None:
        """Settle one request, exactly once: complete its record, charge the balance, append
        the ledger entry and update the daily roll-up in one transaction. Idempotent per
        request id: a second call changes nothing and returns None. Returns the cost."""
        cost = cost_micro(
            pending.prices,
            outcome.input_tokens,
            outcome.output_tokens,
            outcome.cache_read_tokens,
            outcome.cache_write_tokens,
        )
        settlement = Settlement(
            request_id=pending.request_id,
            account_id=pending.account_id,
            key_id=pending.key_id,
            model=pending.model,
            cost=cost,
            ok=outcome.status == "ok",
            now=utcnow(),
            values={
                "status": outcome.status,
                "http_status": outcome.http_status,
                "error_type": outcome.error_type,
                "channel": outcome.channel,
                "upstream_protocol": outcome.upstream_protocol,
                "input_tokens": outcome.input_tokens,
                "output_tokens": outcome.output_tokens,
                "cache_read_tokens": outcome.cache_read_tokens,
                "cache_write_tokens": outcome.cache_write_tokens,
                "cost_micro": cost,
                "price_id": pending.prices.price_id,
                "usage_source": outcome.usage_source,
                "attempts": json.dumps(outcome.attempts) if outcome.attempts else None,
                "latency_ms": outcome.latency_ms,
                "ttfb_ms": outcome.ttfb_ms,
                "recovered": outcome.recovered,
            },
        )
        return cost if await self.hot.settle(settlement) else None

    # ---- crash recovery -------------------------------------------------------------------
    async def recover_pending(self, dead_instance_ids: list[str] | None, older_than: dt.datetime | None = None) -> int:
        """Settle pending records left by processes that died: charge the input estimate
        (the best usage known without the upstream's answer) and mark them recovered."""
        q = select(
            RequestRecord.id,
            RequestRecord.account_id,
            RequestRecord.key_id,
            RequestRecord.model,
            RequestRecord.input_estimate,
            RequestRecord.price_id,
            RequestRecord.output_tokens,  # a stream's relayed output at its last checkpoint
        ).where(RequestRecord.settled_at.is_(None))
        conds: list[ColumnElement[bool]] = []
        if dead_instance_ids:
            conds.append(RequestRecord.instance_id.in_(dead_instance_ids))
        if older_than is not None:
            conds.append(RequestRecord.created_at < older_than)
        if not conds:
            return 0
        from sqlalchemy import or_

        q = q.where(or_(*conds))
        from a2agent.store.models import ModelPrice

        async with self.db.read_conn() as conn:
            rows = (await conn.execute(q)).all()
            price_rows = {
                p.id: p
                for p in (
                    await conn.execute(
                        select(ModelPrice).where(ModelPrice.id.in_({r[5] for r in rows if r[5]}))
                    )
                ).all()
            }
        count = 0
        for rid, account_id, key_id, model, estimate, price_id, relayed in rows:
            p = price_rows.get(price_id)
            prices = (
                Prices(p.input_micro, p.output_micro, p.cache_read_micro, p.cache_write_micro, p.id)
                if p is not None
                else Prices(0, 0, 0, 0, None)
            )
            pending = PendingRequest(rid, account_id, key_id, model, prices)
            outcome = Outcome(
                status="recovered",
                input_tokens=int(estimate or 0),
                output_tokens=int(relayed or 0),
                usage_source="recovered_relayed" if relayed else "recovered_estimate",
                error_type="gateway_restart",
                recovered=True,
            )
            if await self.settle(pending, outcome) is not None:
                count += 1
        return count

    # ---- reading ----------------------------------------------------------------------------
    async def entries(self, account_id: int, *, limit: int = 50, offset: int = 0) -> list[LedgerEntry]:
        async with self.db.read() as s:
            q = (
                select(LedgerEntry)
                .where(LedgerEntry.account_id == account_id)
                .order_by(LedgerEntry.id.desc())
                .limit(limit)
                .offset(offset)
            )
            return list((await s.scalars(q)).all())

    async def count_entries(self, account_id: int) -> int:
        async with self.db.read() as s:
            return int(
                await s.scalar(select(func.count()).where(LedgerEntry.account_id == account_id)) or 0
            )
