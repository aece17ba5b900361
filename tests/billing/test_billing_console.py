"""The Billing page over HTTP: top-up form → Stripe Checkout, success page and receipts, the
readable ledger (charges grouped per day and key, exact running balance), CSV exports, the
monthly spend limit (403 spend_limit_reached), the sign-up credit and the balance banner —
and, without Stripe configuration, no trace of card payments."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest
from sqlalchemy import insert, update

from a2agent.console import ledger_rows
from a2agent.store.models import DailyUsage, LedgerEntry
from tests.billing.conftest import PayEnv
from tests.conftest import Env, _env
from tests.console.conftest import ConsoleClient
from tests.support.upstream import ScriptedUpstream


def _login(env: Env, email: str) -> ConsoleClient:
    c = ConsoleClient(env.url)
    assert c.login(email).status_code == 303
    return c


def _chat(env: Env, key: str) -> Any:
    return openai.OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "Say hello"}])


def test_without_stripe_nothing_about_payments_is_shown_or_reachable(env: Env) -> None:
    acc = env.account(balance_usd=0)
    c = _login(env, acc.email)
    page = c.get("/billing").text
    assert "Redeem" in page and "contact the administrator" in page
    for word in ("Add funds", "Top up", "Stripe", "/billing/topup"):
        assert word not in page
    assert c.post("/billing/topup", {"amount": "10.00"}).status_code == 404
    assert c.get("/billing/topup/done?session_id=cs_x").status_code == 404
    assert c.get("/billing/payments/1").status_code == 404
    r = httpx.post(env.url + "/webhooks/stripe", content=b"{}",
                   headers={"stripe-signature": "t=1,v1=00"})
    assert r.status_code == 404
    admin = env.account(admin=True)
    a = _login(env, admin.email)
    assert a.get("/admin/payments").status_code == 404
    assert "/admin/payments" not in a.get("/admin/users").text
    c.close()
    a.close()


def test_top_up_form_redirects_to_checkout_and_back(pay: PayEnv) -> None:
    env, stripe = pay.env, pay.stripe
    acc = env.account(balance_usd=0)
    c = _login(env, acc.email)
    r = c.get("/billing")
    assert "Add funds" in r.text and 'value="5.00"' in r.text and 'value="50.00"' in r.text
    assert f"form-action 'self' https://checkout.stripe.com {stripe.url}" in \
        r.headers["content-security-policy"]
    for custom, why in (("1", "from $5.00 to $1,000.00"), ("12.345", "whole cents"),
                        ("abc", "US dollars"), ("5000", "from $5.00")):
        bad = c.post("/billing/topup", {"amount": "5.00", "custom": custom})
        assert bad.status_code == 400 and why in bad.text, custom
    assert stripe.sessions == {}
    r = c.post("/billing/topup", {"amount": "10.00", "custom": "12.50"})
    assert r.status_code == 303 and r.headers["location"].startswith(stripe.url + "/c/pay/cs_test_")
    sid = r.headers["location"].rsplit("/", 1)[1]
    assert stripe.sessions[sid]["amount_total"] == 1250
    # back from Checkout before the webhook: nothing is credited by the browser
    done = c.get(f"/billing/topup/done?session_id={sid}")
    assert "being confirmed" in done.text and env.balance(acc.id) == 0
    stripe.pay(sid)
    assert stripe.send("checkout.session.completed", stripe.sessions[sid]).status_code == 200
    done = c.get(f"/billing/topup/done?session_id={sid}")
    assert "$12.50 was added" in done.text
    payment_id = int(done.text.split("/billing/payments/")[1].split('"')[0])
    receipt = c.get(f"/billing/payments/{payment_id}").text
    for part in ("$12.50 USD", "visa •••• 4242", sid, "Card payment"):
        assert part in receipt, part
    # another account sees neither the receipt nor the session
    other = _login(env, env.account(balance_usd=0).email)
    assert other.get(f"/billing/payments/{payment_id}").status_code == 404
    assert other.get(f"/billing/topup/done?session_id={sid}").status_code == 404
    assert c.get("/billing/topup/cancelled").status_code == 200
    admin = _login(env, env.account(admin=True).email)
    listing = admin.get("/admin/payments").text
    assert acc.email in listing and sid in listing and "$12.50" in listing
    assert admin.get(f"/billing/payments/{payment_id}").status_code == 200
    for client in (c, other, admin):
        client.close()


def test_ledger_groups_charges_with_exact_running_balance(env_both: Env) -> None:
    env = env_both
    acc = env.account(balance_usd=10)
    ka, kb = env.key(acc.id, "alpha"), env.key(acc.id, "beta")
    for key in (ka, ka, kb, ka, kb):
        _chat(env, key)
    env.settle_all()
    env.call(env.services.ledger.adjust(acc.id, 1_000_000, "goodwill"))
    for key in (ka, ka):
        _chat(env, key)
    env.settle_all()
    rows, has_next = env.call(ledger_rows.rows(env.services.db, acc.id))
    assert not has_next
    assert [(r.kind, r.count) for r in rows] == [("charge", 2), ("topup", 1), ("charge", 5),
                                                 ("topup", 1)]
    entries = {e.id: e for e in env.call(env.services.ledger.entries(acc.id, limit=100))}
    for r in rows:  # each row's balance is the ledger's own after its last entry
        assert r.balance_after == entries[r.last_id].balance_after
        assert r.amount == sum(e.amount_micro for i, e in entries.items()
                               if r.first_id <= i <= r.last_id)
    assert rows[0].balance_after == env.balance(acc.id)
    shares = {k.key_id: (k.requests, k.amount) for k in rows[2].keys}
    assert sorted(n for n, _ in shares.values()) == [2, 3]
    assert sum(a for _, a in shares.values()) == rows[2].amount
    topups, _ = env.call(ledger_rows.rows(env.services.db, acc.id, kind="topup"))
    assert [r.amount for r in topups] == [1_000_000, 10_000_000]

    c = _login(env, acc.email)
    page = c.get("/billing").text
    assert "5 requests" in page and "alpha" in page and "beta" in page and "goodwill" in page
    charge = -rows[0].amount
    assert f"-${charge // 1_000_000}.{charge % 1_000_000:06d}".rstrip("0") in page
    assert c.get("/billing?kind=charge").text.count('data-kind="charge"') == 2
    ledger = list(csv.DictReader(io.StringIO(c.get("/billing/ledger.csv").text)))
    assert len(ledger) == len(entries) and ledger[-1]["balance_after_usd"] == \
        f"{env.balance(acc.id) / 1_000_000:.6f}"
    assert sum(int(x["amount_usd"].replace(".", "")) for x in ledger) == env.balance(acc.id)
    usage = list(csv.DictReader(io.StringIO(c.get("/billing/usage.csv").text)))
    assert {u["key_name"]: int(u["requests"]) for u in usage} == {"alpha": 5, "beta": 2}
    # the first two charges of the run happened yesterday (UTC): the run splits at midnight
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)

    async def backdate() -> None:
        async with env.services.db.write_conn() as conn:
            await conn.execute(update(LedgerEntry).where(
                LedgerEntry.id.between(rows[2].first_id, rows[2].first_id + 1))
                .values(created_at=yesterday))

    env.call(backdate())
    split, _ = env.call(ledger_rows.rows(env.services.db, acc.id, kind="charge"))
    assert [(r.count, r.day) for r in split] == [(2, yesterday.date() + dt.timedelta(days=1)),
                                                 (3, yesterday.date() + dt.timedelta(days=1)),
                                                 (2, yesterday.date())]
    assert split[2].balance_after == entries[rows[2].first_id + 1].balance_after
    c.close()


def test_monthly_spend_limit_refuses_then_resets(env_both: Env) -> None:
    env = env_both
    acc = env.account(balance_usd=10)
    key = env.key(acc.id)
    c = _login(env, acc.email)
    assert c.post("/billing/spend-limit", {"limit": "-3"}).status_code == 400
    assert c.post("/billing/spend-limit", {"limit": "0.000001"}).status_code == 303
    _chat(env, key)  # spend 0 < limit: admitted
    env.settle_all()
    with pytest.raises(openai.PermissionDeniedError) as err:
        _chat(env, key)
    assert err.value.code == "spend_limit_reached"
    assert "Monthly spend limit reached" in str(err.value)
    assert "limit $0.000001" in c.get("/").text or "limit $0" in c.get("/").text
    assert c.post("/billing/spend-limit", {"limit": ""}).status_code == 303  # removed
    _chat(env, key)
    # last month's spend does not count against this month's limit
    other = env.account(balance_usd=10)
    okey = env.key(other.id)
    last_month = dt.datetime.now(dt.UTC).date().replace(day=1) - dt.timedelta(days=1)

    async def old_spend() -> None:
        async with env.services.db.write_conn() as conn:
            await conn.execute(insert(DailyUsage).values(
                day=last_month, account_id=other.id, key_id=0, model="gpt-test", requests=1,
                errors=0, input_tokens=0, output_tokens=0, cache_read_tokens=0,
                cache_write_tokens=0, cost_micro=50_000_000))

    env.call(old_spend())
    from a2agent.billing import spend

    env.call(spend.set_limit(env.services.db, other.id, 1_000_000))
    assert _chat(env, okey).choices[0].message.content
    env.settle_all()
    c.close()


@pytest.fixture
def credit_env(tmp_path: Path, upstream: ScriptedUpstream) -> Iterator[Env]:
    yield from _env(tmp_path, upstream, None, signup_credit_usd=1.5, low_balance_usd=5.0)


def test_signup_credit_and_balance_banner(credit_env: Env) -> None:
    env = credit_env
    c = ConsoleClient(env.url)
    assert "$1.50" in c.get("/signup").text
    r = c.post("/signup", {"email": "new@example.com", "password": "correct horse battery",
                           "confirm": "correct horse battery"})
    assert r.status_code == 303
    acc = env.call(env.services.accounts.by_email("new@example.com"))
    (entry,) = env.call(env.services.ledger.entries(acc.id))
    assert (entry.kind, entry.amount_micro, entry.note) == ("grant", 1_500_000, "sign-up credit")
    for path in ("/", "/keys", "/usage", "/billing", "/models", "/account"):
        page = c.get(path).text
        assert 'id="balance-banner"' in page and "balance is low: $1.50" in page, path
        assert "redeem a top-up code" in page.lower()
    env.call(env.services.ledger.adjust(acc.id, -1_500_000, "test"))
    assert "Your balance is $0.00." in c.get("/keys").text
    env.call(env.services.ledger.adjust(acc.id, 5_000_000, "test"))
    assert 'id="balance-banner"' not in c.get("/keys").text
    admin = _login(env, env.account(admin=True, balance_usd=0).email)
    assert 'id="balance-banner"' not in admin.get("/keys").text
    c.close()
    admin.close()
