"""Stripe Checkout top-ups: the webhook credits from Stripe's own session object, exactly once,
only when signed with our secret; refunds debit; everything else is acknowledged and ignored.
The official `stripe` library talks to a scripted Stripe over loopback HTTP; webhooks are
signed here the way Stripe signs them. `db verify` must stay clean after every case."""

from __future__ import annotations

import concurrent.futures
import time

import orjson

from a2agent.billing.verify import verify

from tests.billing.conftest import PayEnv
from tests.support.stripe_fake import WEBHOOK_SECRET, sign


def _completed(pay: PayEnv, sid: str) -> bytes:
    return pay.stripe.event("checkout.session.completed", pay.stripe.sessions[sid])


def test_checkout_session_is_created_for_the_signed_in_account(pay: PayEnv) -> None:
    acc = pay.env.account(balance_usd=0)
    sid = pay.start(acc, 25)
    s = pay.stripe.sessions[sid]
    assert (s["mode"], s["amount_total"], s["currency"]) == ("payment", 2500, "usd")
    assert s["client_reference_id"] == str(acc.id)
    assert s["metadata"]["a2agent_account_id"] == str(acc.id)
    assert s["success_url"].endswith("/billing/topup/done?session_id={CHECKOUT_SESSION_ID}")
    payment = pay.env.call(pay.env.services.payments.by_session(acc.id, sid))
    assert (payment.status, payment.requested_micro, payment.amount_micro) == ("open", 25_000_000, 0)
    assert pay.env.balance(acc.id) == 0  # nothing until Stripe says so


def test_completed_event_credits_stripe_amount_once(pay_both: PayEnv) -> None:
    pay = pay_both
    acc = pay.env.account(balance_usd=0)
    sid = pay.start(acc, 20)
    pay.stripe.pay(sid)
    # the event body claims more than was paid; the credit comes from the API's session
    forged = dict(pay.stripe.sessions[sid], amount_total=999_999_00)
    payload = pay.stripe.event("checkout.session.completed", forged)
    r = pay.stripe.deliver(payload, sign(payload))
    assert r.status_code == 200 and r.json()["result"].startswith("credited 20000000")
    assert pay.env.balance(acc.id) == 20_000_000
    (entry,) = pay.entries(acc.id)
    assert (entry.kind, entry.amount_micro, entry.balance_after) == ("payment", 20_000_000,
                                                                     20_000_000)
    assert entry.reference == sid and entry.payment_id is not None
    # a replay of the very same delivery, and a fresh event for the same session
    assert pay.stripe.deliver(payload, sign(payload)).json()["result"].startswith("duplicate")
    assert pay.stripe.send("checkout.session.async_payment_succeeded",
                           pay.stripe.sessions[sid]).json()["result"].startswith("duplicate")
    assert pay.env.balance(acc.id) == 20_000_000 and len(pay.entries(acc.id)) == 1
    receipt = pay.env.call(pay.env.services.payments.receipt(entry.payment_id, acc.id))
    assert receipt.payment.method == "visa •••• 4242"
    assert receipt.payment.stripe_charge.startswith("ch_test_")
    assert pay.env.call(pay.env.services.payments.receipt(entry.payment_id, acc.id + 1)) is None
    pay.verify_clean()


def test_signature_is_required_and_checked(pay: PayEnv) -> None:
    acc = pay.env.account(balance_usd=0)
    sid = pay.start(acc, 10)
    pay.stripe.pay(sid)
    payload = _completed(pay, sid)
    now = int(time.time())
    bad = {
        "missing header": None,
        "empty header": "",
        "malformed header": "garbage",
        "no v1 signature": f"t={now},v0=abc",
        "wrong secret": sign(payload, "whsec_not_the_right_one"),
        "stale timestamp": sign(payload, WEBHOOK_SECRET, now - 301),
        "signature of another payload": sign(payload.replace(b'"livemode":false',
                                                             b'"livemode":true')),
    }
    for why, header in bad.items():
        r = pay.stripe.deliver(payload, header)
        assert r.status_code == 400, why
        assert "signature" in r.json()["error"], why
    tampered = payload.replace(b'"amount_total":1000', b'"amount_total":9000')
    assert tampered != payload
    r = pay.stripe.deliver(tampered, sign(payload))
    assert r.status_code == 400
    assert pay.env.balance(acc.id) == 0 and pay.entries(acc.id) == []
    # inside the tolerance window it is accepted; several v1 values (secret rolling) too
    rolled = f"{sign(payload, WEBHOOK_SECRET, now - 200)},v1={'0' * 64}"
    assert pay.stripe.deliver(payload, rolled).status_code == 200
    assert pay.env.balance(acc.id) == 10_000_000
    pay.verify_clean()


def test_concurrent_duplicate_deliveries_credit_once(pay_both: PayEnv) -> None:
    pay = pay_both
    acc = pay.env.account(balance_usd=0)
    sid = pay.start(acc, 15)
    pay.stripe.pay(sid)
    same = _completed(pay, sid)
    header = sign(same)
    jobs = [(same, header)] * 6 + [
        (p, sign(p)) for p in (_completed(pay, sid), _completed(pay, sid),
                               pay.stripe.event("checkout.session.async_payment_succeeded",
                                                pay.stripe.sessions[sid]))]
    with concurrent.futures.ThreadPoolExecutor(len(jobs)) as ex:
        results = list(ex.map(lambda j: pay.stripe.deliver(*j), jobs))
    assert [r.status_code for r in results] == [200] * len(jobs)
    credited = [r for r in results if r.json()["result"].startswith("credited")]
    assert len(credited) == 1
    assert pay.env.balance(acc.id) == 15_000_000
    assert [e.kind for e in pay.entries(acc.id)] == ["payment"]
    pay.verify_clean()


def test_async_payment_is_credited_when_it_succeeds(pay: PayEnv) -> None:
    acc = pay.env.account(balance_usd=0)
    sid = pay.start(acc, 30)
    pay.stripe.pay(sid, delayed=True)
    r = pay.stripe.send("checkout.session.completed", pay.stripe.sessions[sid])
    assert r.status_code == 200 and r.json()["result"].startswith("pending")
    payment = pay.env.call(pay.env.services.payments.by_session(acc.id, sid))
    assert payment.status == "processing" and pay.env.balance(acc.id) == 0
    pay.stripe.settle_async(sid)
    r = pay.stripe.send("checkout.session.async_payment_succeeded", pay.stripe.sessions[sid])
    assert r.json()["result"].startswith("credited 30000000")
    assert pay.env.balance(acc.id) == 30_000_000
    pay.verify_clean()


def test_refunds_debit_once_and_point_to_the_payment(pay_both: PayEnv) -> None:
    pay = pay_both
    acc = pay.env.account(balance_usd=0)
    sid = pay.start(acc, 20)
    pay.stripe.pay(sid)
    assert pay.stripe.send("checkout.session.completed", pay.stripe.sessions[sid]).status_code == 200
    charge = pay.stripe.refund(sid, 500)  # $5 of $20
    payload = pay.stripe.event("charge.refunded", charge)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        results = list(ex.map(lambda _: pay.stripe.deliver(payload, sign(payload)), range(4)))
    assert [r.status_code for r in results] == [200] * 4
    assert sum(r.json()["result"].startswith("debited") for r in results) == 1
    assert pay.env.balance(acc.id) == 15_000_000
    charge = pay.stripe.refund(sid)  # the rest
    assert pay.stripe.send("charge.refunded", charge).json()["result"].startswith("debited 15000000")
    assert pay.stripe.send("charge.refunded", charge).json()["result"].startswith("duplicate")
    entries = pay.entries(acc.id)
    assert [(e.kind, e.amount_micro, e.balance_after) for e in entries] == [
        ("payment", 20_000_000, 20_000_000), ("refund", -5_000_000, 15_000_000),
        ("refund", -15_000_000, 0)]
    assert {e.payment_id for e in entries} == {entries[0].payment_id}
    assert entries[1].reference == charge["id"]
    payment = pay.env.call(pay.env.services.payments.by_session(acc.id, sid))
    assert payment.refunded_micro == 20_000_000
    pay.verify_clean()


def test_unknown_events_and_foreign_sessions_are_acknowledged_and_ignored(pay: PayEnv) -> None:
    acc = pay.env.account(balance_usd=0)
    r = pay.stripe.send("customer.created", {"id": "cus_test_1", "object": "customer"})
    assert r.status_code == 200 and r.json()["result"].startswith("ignored")
    foreign = {"id": "cs_test_not_ours", "object": "checkout.session", "amount_total": 5000,
               "currency": "usd", "payment_status": "paid", "client_reference_id": str(acc.id)}
    r = pay.stripe.send("checkout.session.completed", foreign)
    assert r.status_code == 200 and r.json()["result"].startswith("ignored")
    r = pay.stripe.send("charge.refunded", {"id": "ch_test_unknown", "object": "charge",
                                            "payment_intent": "pi_test_unknown"})
    assert r.status_code == 200 and r.json()["result"].startswith("ignored")
    body = orjson.dumps({"no": "type"})
    assert pay.stripe.deliver(body, sign(body)).status_code == 400
    assert pay.env.balance(acc.id) == 0
    pay.verify_clean()


def test_stripe_unreachable_means_retry_later(pay: PayEnv) -> None:
    acc = pay.env.account(balance_usd=0)
    sid = pay.start(acc, 10)
    pay.stripe.pay(sid)
    payload = _completed(pay, sid)
    pay.stripe.available = False
    r = pay.stripe.deliver(payload, sign(payload))
    assert r.status_code == 503 and pay.env.balance(acc.id) == 0
    pay.stripe.available = True
    r = pay.stripe.deliver(payload, sign(payload))  # Stripe's retry
    assert r.status_code == 200 and pay.env.balance(acc.id) == 10_000_000
    pay.verify_clean()


def test_verify_catches_a_double_credit_and_cli_lists_payments(pay: PayEnv) -> None:
    from a2agent.billing.ledger import Ledger
    from tests.conftest import run_cli

    acc = pay.env.account(balance_usd=0)
    sid = pay.start(acc, 10)
    pay.stripe.pay(sid)
    pay.stripe.send("checkout.session.completed", pay.stripe.sessions[sid])
    pay.start(acc, 40)  # opened, never paid
    settings = pay.env.gw.settings
    cli_env = {"A2AGENT_DATA_DIR": str(settings.data_dir),
               "A2AGENT_DATABASE_URL": settings.database_url.replace("+aiosqlite", "")}
    listed = run_cli("payments", "list", "--json", env=cli_env)
    assert listed.returncode == 0, listed.stderr
    rows = orjson.loads(listed.stdout)
    assert [(r["email"], r["amount_usd"], r["status"], r["method"]) for r in rows] == [
        (acc.email, "10.000000", "paid", "visa •••• 4242")]
    everything = orjson.loads(run_cli("payments", "list", "--all", "--json", env=cli_env).stdout)
    assert [r["status"] for r in everything] == ["open", "paid"]
    text = run_cli("payments", "list", "--email", acc.email, env=cli_env)
    assert sid in text.stdout and "10.000000 USD" in text.stdout
    pay.verify_clean()
    (entry,) = pay.entries(acc.id)

    async def credit_again() -> None:
        async with pay.env.services.db.write_conn() as conn:
            await Ledger._move(conn, acc.id, 10_000_000, "payment", payment_id=entry.payment_id,
                               reference=sid)

    pay.env.call(credit_again())
    problems = pay.env.call(verify(pay.env.services.db))
    assert any(f"payment {entry.payment_id} (paid): ledger has 2 credit(s)" in p for p in problems)


def test_expired_and_failed_sessions_move_no_money(pay: PayEnv) -> None:
    acc = pay.env.account(balance_usd=0)
    expired, failed = pay.start(acc, 10), pay.start(acc, 20)
    r = pay.stripe.send("checkout.session.expired", dict(pay.stripe.sessions[expired],
                                                         status="expired"))
    assert r.json()["result"] == "marked expired"
    pay.stripe.pay(failed, delayed=True)
    pay.stripe.send("checkout.session.completed", pay.stripe.sessions[failed])
    r = pay.stripe.send("checkout.session.async_payment_failed", pay.stripe.sessions[failed])
    assert r.json()["result"] == "marked failed"
    payments = pay.env.services.payments
    assert pay.env.call(payments.by_session(acc.id, expired)).status == "expired"
    assert pay.env.call(payments.by_session(acc.id, failed)).status == "failed"
    assert pay.env.balance(acc.id) == 0 and pay.entries(acc.id) == []
    pay.verify_clean()


def test_oversized_delivery_is_refused(pay: PayEnv) -> None:
    body = b'{"type":"x","pad":"' + b"a" * (1024 * 1024) + b'"}'
    assert pay.stripe.deliver(body, sign(body)).status_code == 413
