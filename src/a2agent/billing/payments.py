"""Card top-ups through Stripe Checkout: sessions, webhook events, credits and refunds.

The browser never tells us what was paid. A top-up starts a Checkout Session (recorded as an
``open`` payment); only a signed webhook makes us look at the session *as Stripe has it* and
credit its ``amount_total``. The ``payments`` row is the once-only guard: its Stripe session id
is unique and crediting is the conditional transition ``open|processing → paid``, in the same
transaction as the balance move and the ledger entry, so duplicated or concurrent deliveries
credit once. Refunds use Stripe's cumulative ``amount_refunded`` with a compare-and-set on
``refunded_micro``, so each refunded cent is debited once whatever the delivery order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update

from a2agent.billing.ledger import Ledger
from a2agent.billing.money import MICRO
from a2agent.billing.stripe_api import CENT_MICRO, StripeApi, card_method
from a2agent.config import Settings
from a2agent.store.db import Database
from a2agent.store.models import Account, LedgerEntry, Payment, utcnow

log = logging.getLogger("a2agent.payments")

SESSION_PAID = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


class TopUpError(ValueError):
    """A top-up the account asked for that we will not start (message is for the user)."""


class WebhookRetry(RuntimeError):
    """Not processable yet (Stripe unreachable, payment not yet credited): answer non-2xx so
    Stripe delivers the event again later."""


@dataclass(frozen=True)
class Receipt:
    payment: Payment
    email: str
    entries: list[LedgerEntry]


class Payments:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._api: StripeApi | None = None

    @property
    def api(self) -> StripeApi:
        if self._api is None:  # the stripe library is imported only where payments are on
            assert self.settings.stripe_secret_key and self.settings.stripe_webhook_secret
            self._api = StripeApi(self.settings.stripe_secret_key,
                                  self.settings.stripe_webhook_secret,
                                  self.settings.stripe_api_base)
        return self._api

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()

    # ---- starting a top-up ----------------------------------------------------------------
    def check_amount(self, amount_micro: int) -> int:
        """The amount in cents, or TopUpError saying what is allowed."""
        lo = round(self.settings.topup_min_usd * MICRO)
        hi = round(self.settings.topup_max_usd * MICRO)
        if amount_micro % CENT_MICRO:
            raise TopUpError("Enter an amount in whole cents, such as 20 or 12.50.")
        if not lo <= amount_micro <= hi:
            raise TopUpError(f"Top-ups are from ${lo / MICRO:,.2f} to ${hi / MICRO:,.2f}.")
        return amount_micro // CENT_MICRO

    async def start_checkout(self, account_id: int, email: str, amount_micro: int,
                             base_url: str) -> str:
        """Create a Checkout Session for this account; returns the URL to send the browser to."""
        cents = self.check_amount(amount_micro)
        session = await self.api.create_checkout_session(
            account_id=account_id, email=email, amount_cents=cents,
            success_url=f"{base_url}/billing/topup/done?session_id={{CHECKOUT_SESSION_ID}}",
            cancel_url=f"{base_url}/billing/topup/cancelled")
        async with self.db.write_conn() as conn:
            await conn.execute(insert(Payment).values(
                account_id=account_id, stripe_session_id=session["id"], status="open",
                requested_micro=amount_micro, amount_micro=0, refunded_micro=0, currency="usd",
                created_at=utcnow()))
        return str(session["url"])

    # ---- webhook events --------------------------------------------------------------------
    async def handle_event(self, payload: bytes, signature: str | None) -> str:
        """Verify and apply one webhook delivery; returns what happened, for the log and the
        response. Raises stripe_api.BadSignature (→ 400) or WebhookRetry (→ 503)."""
        event = self.api.verify_event(payload, signature)
        kind = event["type"]
        obj = (event.get("data") or {}).get("object") or {}
        oid = obj.get("id") if isinstance(obj, dict) else None
        if not isinstance(oid, str):
            return "ignored: no object id"
        if kind in SESSION_PAID:
            result = await self._session_paid(oid)
        elif kind in ("checkout.session.async_payment_failed", "checkout.session.expired"):
            result = await self._session_closed(oid, "failed" if "failed" in kind else "expired")
        elif kind == "charge.refunded":
            intent = obj.get("payment_intent")
            result = await self._charge_refunded(oid, intent if isinstance(intent, str) else None)
        else:
            result = "ignored: event type not used"
        log.info("stripe event %s %s %s: %s", event.get("id"), kind, oid, result)
        return result

    async def _payment(self, **where: str) -> Payment | None:
        conds = [getattr(Payment, k) == v for k, v in where.items()]
        async with self.db.read() as s:
            return (await s.scalars(select(Payment).where(*conds))).first()

    async def _fetch(self, call: Any) -> dict[str, Any]:
        from a2agent.billing.stripe_api import StripeUnavailable

        try:
            result: dict[str, Any] = await call
        except StripeUnavailable as exc:
            raise WebhookRetry(str(exc)) from None
        return result

    async def _session_paid(self, session_id: str) -> str:
        payment = await self._payment(stripe_session_id=session_id)
        if payment is None:
            return "ignored: not a session of this gateway"
        if payment.status == "paid":
            return "duplicate: already credited"
        session = await self._fetch(self.api.checkout_session(session_id))
        if session.get("payment_status") != "paid":
            await self._session_closed(session_id, "processing")
            return "pending: payment not yet confirmed"
        if session.get("currency") != "usd" or not isinstance(session.get("amount_total"), int):
            log.warning("stripe session %s: not a USD amount; not credited", session_id)
            return "ignored: not a USD amount"
        amount = int(session["amount_total"]) * CENT_MICRO
        intent = session.get("payment_intent")
        charge = intent.get("latest_charge") if isinstance(intent, dict) else None
        values = {
            "status": "paid", "amount_micro": amount, "paid_at": utcnow(),
            "stripe_payment_intent": intent.get("id") if isinstance(intent, dict) else intent,
            "stripe_charge": charge.get("id") if isinstance(charge, dict) else charge,
            "method": card_method(charge) or ", ".join(session.get("payment_method_types") or [])
            or None,
        }
        async with self.db.write_conn() as conn:
            row = (await conn.execute(
                update(Payment)
                .where(Payment.id == payment.id, Payment.status.in_(("open", "processing",
                                                                    "expired", "failed")))
                .values(**values)
                .returning(Payment.id, Payment.account_id))).first()
            if row is None:
                return "duplicate: already credited"
            await Ledger._move(conn, int(row.account_id), amount, "payment", payment_id=row.id,
                               reference=session_id, note="Card payment (Stripe Checkout)")
        return f"credited {amount} micro-USD to account {row.account_id}"

    async def _session_closed(self, session_id: str, status: str) -> str:
        async with self.db.write_conn() as conn:
            result = await conn.execute(
                update(Payment).where(Payment.stripe_session_id == session_id,
                                      Payment.status.in_(("open", "processing")))
                .values(status=status))
        return f"marked {status}" if result.rowcount else "ignored: nothing to change"

    async def _charge_refunded(self, charge_id: str, intent: str | None) -> str:
        payment = await self._payment(stripe_charge=charge_id)
        if payment is None and intent:
            payment = await self._payment(stripe_payment_intent=intent)
        if payment is None:
            return "ignored: not a payment of this gateway"
        if payment.status != "paid":
            raise WebhookRetry("the payment of this refund is not credited yet")
        charge = await self._fetch(self.api.charge(charge_id))  # the refunded total, fresh
        refunded = min(int(charge.get("amount_refunded") or 0) * CENT_MICRO, payment.amount_micro)
        for _ in range(5):  # compare-and-set; a concurrent delivery makes us look again
            async with self.db.write_conn() as conn:
                seen = int(await conn.scalar(
                    select(Payment.refunded_micro).where(Payment.id == payment.id)) or 0)
                if refunded <= seen:
                    return "duplicate: refund already debited"
                result = await conn.execute(
                    update(Payment).where(Payment.id == payment.id,
                                          Payment.refunded_micro == seen)
                    .values(refunded_micro=refunded))
                if result.rowcount != 1:
                    continue
                await Ledger._move(conn, payment.account_id, seen - refunded, "refund",
                                   payment_id=payment.id, reference=charge_id,
                                   note=f"Refund of card payment #{payment.id}")
                return f"debited {refunded - seen} micro-USD from account {payment.account_id}"
        raise WebhookRetry("refund kept changing under concurrent deliveries")

    # ---- reading ---------------------------------------------------------------------------
    async def list(self, *, account_id: int | None = None, limit: int = 200,
                   include_open: bool = True) -> list[tuple[Payment, str]]:
        q = (select(Payment, Account.email).join(Account, Account.id == Payment.account_id)
             .order_by(Payment.id.desc()).limit(limit))
        if account_id is not None:
            q = q.where(Payment.account_id == account_id)
        if not include_open:
            q = q.where(Payment.status == "paid")
        async with self.db.read() as s:
            return [(p, e) for p, e in (await s.execute(q)).all()]

    async def by_session(self, account_id: int, session_id: str) -> Payment | None:
        async with self.db.read() as s:
            return (await s.scalars(select(Payment).where(
                Payment.stripe_session_id == session_id, Payment.account_id == account_id))).first()

    async def receipt(self, payment_id: int, account_id: int | None) -> Receipt | None:
        """One payment with its ledger entries; ``account_id`` scopes it to its owner."""
        q = (select(Payment, Account.email).join(Account, Account.id == Payment.account_id)
             .where(Payment.id == payment_id))
        if account_id is not None:
            q = q.where(Payment.account_id == account_id)
        async with self.db.read() as s:
            row = (await s.execute(q)).first()
            if row is None:
                return None
            entries = list((await s.scalars(select(LedgerEntry).where(
                LedgerEntry.payment_id == payment_id).order_by(LedgerEntry.id))).all())
        return Receipt(row[0], row[1], entries)

    async def totals(self) -> dict[str, int]:
        q = select(func.count(), func.coalesce(func.sum(Payment.amount_micro), 0),
                   func.coalesce(func.sum(Payment.refunded_micro), 0)).where(
            Payment.status == "paid")
        async with self.db.read_conn() as conn:
            n, paid, refunded = (await conn.execute(q)).one()
        return {"count": int(n), "paid": int(paid), "refunded": int(refunded)}
