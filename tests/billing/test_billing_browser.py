"""The self-serve money journey in Debian's Chromium: a new user signs up, sees the $0 banner,
tops up through (scripted) Stripe Checkout, the signed webhook credits the balance once, the
ledger shows the payment, an API call succeeds; a refund debits it again. Screenshots of the
Billing page at desktop and phone width go to test-artifacts/billing."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import openai
import pytest

from tests.billing.conftest import PayEnv
from tests.console.conftest import CHROMIUM, CHROMIUM_ARGS, watch

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def chromium(pay: PayEnv) -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _chat(pay: PayEnv, key: str) -> Any:
    client = openai.OpenAI(base_url=pay.env.url + "/v1", api_key=key, max_retries=0, timeout=30)
    return client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "Say hello"}])


def test_top_up_journey_and_refund(pay: PayEnv, chromium: Any, artifacts: Path) -> None:
    env, stripe = pay.env, pay.stripe
    folder = artifacts / "billing"
    folder.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    ctx = chromium.new_context(base_url=env.url, viewport={"width": 1280, "height": 800})
    page = watch(ctx.new_page(), errors)

    # ---- sign up: $0 and a banner that says how to top up -------------------------------------
    page.goto("/signup")
    page.fill("#email", "carol@example.com")
    page.fill("#password", "correct horse battery")
    page.fill("#confirm", "correct horse battery")
    page.click("button:has-text('Create account')")
    page.wait_for_url("**/keys")
    banner = page.inner_text("#balance-banner")
    assert "Your balance is $0.00" in banner and "Top up with a card" in banner
    page.click("button:has-text('Create Key')")
    page.fill("#label", "laptop")
    page.click("#create-key-dialog button[type=submit]")
    page.wait_for_selector("#new-key-dialog[open]")
    key = page.inner_text("#new-key-value").strip()
    page.click("text=I have saved my key")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        _chat(pay, key)
    assert refused.value.code == "insufficient_balance"

    # ---- top up $10 through Checkout ------------------------------------------------------------
    page.click("#balance-banner a:has-text('Top up with a card')")
    page.wait_for_url("**/billing*")
    page.click("label.preset:has-text('$10')")
    page.click("#top-up-button")
    page.wait_for_url(re.compile(re.escape(stripe.url) + r"/c/pay/cs_test_\w+"))
    assert "Pay $10.00" in page.inner_text("h1")
    page.click("#pay")
    page.wait_for_url("**/billing/topup/done*")
    assert "$10.00 was added to your balance" in page.inner_text("#payment-state")
    assert stripe.deliveries == [("checkout.session.completed", 200)]
    account = env.call(env.services.accounts.by_email("carol@example.com"))
    assert env.balance(account.id) == 10_000_000
    page.goto("/billing")
    assert page.locator("#balance-banner").count() == 0
    row = page.locator("tr[data-kind=payment]")
    assert row.count() == 1 and "+$10.00" in row.inner_text()
    page.screenshot(path=str(folder / "billing-1280x800.png"), full_page=True)
    page.click("tr[data-kind=payment] a")
    page.wait_for_url("**/billing/payments/*")
    assert "visa •••• 4242" in page.inner_text("main")

    # ---- the key now works; the charge shows up grouped under today ------------------------------
    assert _chat(pay, key).choices[0].message.content
    env.settle_all()
    page.goto("/billing")
    charges = page.locator("tr[data-kind=charge]")
    assert charges.count() == 1 and "1 request" in charges.inner_text()
    charges.locator("summary").click()
    assert "laptop" in charges.inner_text()
    phone = watch(chromium.new_context(base_url=env.url, viewport={"width": 390, "height": 844},
                                       storage_state=ctx.storage_state()).new_page(), errors)
    phone.goto("/billing")
    phone.screenshot(path=str(folder / "billing-390x844.png"), full_page=True)

    # ---- a refund (made in Stripe's dashboard) debits the balance ------------------------------
    (sid,) = stripe.sessions
    assert stripe.send("charge.refunded", stripe.refund(sid)).status_code == 200
    balance = env.balance(account.id)
    assert balance < 0  # the $10 are gone and the request's cost stays charged
    page.goto("/billing")
    assert "-$10.00" in page.locator("tr[data-kind=refund]").inner_text()
    assert "Your balance is" in page.inner_text("#balance-banner")
    with pytest.raises(openai.PermissionDeniedError):
        _chat(pay, key)
    pay.verify_clean()
    assert not errors, errors
