"""The console end to end in Debian's Chromium: sign up, sign in, keys shown once, connection
info from the clipboard, the key used with the OpenAI SDK, usage and charges, deletion → 401,
redeeming a code, an admin suspending the user → 403. Screenshots go to test-artifacts/console."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.console.conftest import watch

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def shots(artifacts: Path) -> Any:
    folder = artifacts / "console"
    folder.mkdir(parents=True, exist_ok=True)

    def shot(page: Any, name: str) -> None:
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)

    return shot


def _sdk(env: Any, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0, timeout=30)


def _chat(env: Any, key: str) -> Any:
    return _sdk(env, key).chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "Say hello"}])


def test_user_journey(env: Any, new_context: Any, shots: Any, console_errors: list[str]) -> None:
    page = watch(new_context().new_page(), console_errors)

    # ---- sign up -----------------------------------------------------------------------------
    page.goto("/")
    assert page.url.endswith("/login")
    shots(page, "01-login")
    page.click("text=Create an account")
    page.fill("#email", "alice@example.com")
    page.fill("#password", "correct horse battery")
    page.fill("#confirm", "correct horse battery")
    shots(page, "02-signup")
    page.click("button:has-text('Create account')")
    page.wait_for_url("**/keys")
    assert "Welcome" in page.inner_text(".alert")

    # ---- sign out, sign in --------------------------------------------------------------------
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/login")
    page.fill("#email", "alice@example.com")
    page.fill("#password", "wrong password")
    page.click("button:has-text('Sign in')")
    assert "Email or password is incorrect." in page.inner_text(".alert.error")
    page.fill("#password", "correct horse battery")
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r".*/$"))
    shots(page, "03-dashboard-empty")

    # ---- create a key: shown exactly once -------------------------------------------------------
    page.goto("/keys")
    shots(page, "04-keys-empty")
    page.click("button:has-text('Create Key')")
    page.fill("#label", "production")
    shots(page, "05-create-key-dialog")
    page.click("#create-key-dialog button[type=submit]")
    page.wait_for_selector("#new-key-dialog[open]")
    key = page.inner_text("#new-key-value").strip()
    assert re.fullmatch(r"sk-a2a-[A-Za-z0-9]{32,}", key)
    assert "will not be shown again" in page.inner_text("#new-key-dialog")
    shots(page, "06-key-shown-once")
    page.click("#new-key-dialog button:has-text('Copy')")
    assert page.evaluate("navigator.clipboard.readText()") == key
    page.click("text=I have saved my key")
    row = page.locator("tr[data-key-row]")
    assert row.count() == 1
    masked = f"{key[:11]}…{key[-4:]}"
    assert masked in row.inner_text()
    page.reload()
    assert key not in page.content()
    assert page.locator("#new-key-dialog").count() == 0

    # ---- Copy Connection Info -----------------------------------------------------------------
    page.click("tr[data-key-row] button:has-text('Copy Connection Info')")
    block = page.evaluate("navigator.clipboard.readText()")
    assert "production" in block and key in block
    assert f"OpenAI base URL:    {env.url}/v1" in block
    assert f"Anthropic base URL: {env.url}" in block
    for line in (f"OPENAI_API_KEY={key}", f"OPENAI_BASE_URL={env.url}/v1",
                 f"ANTHROPIC_AUTH_TOKEN={key}", f"ANTHROPIC_BASE_URL={env.url}"):
        assert line in block.splitlines()
    shots(page, "07-keys-list")

    # ---- no balance yet: 403; redeem a code ---------------------------------------------------
    with pytest.raises(openai.PermissionDeniedError):
        _chat(env, key)
    code = env.call(env.services.ledger.create_codes(5_000_000, 1))[0]
    page.goto("/billing")
    page.fill("input[name=code]", "A2A-NOT-A-REAL-CODE")
    page.click("button:has-text('Redeem')")
    assert "invalid or has already been redeemed" in page.inner_text(".alert.error")
    page.fill("input[name=code]", code)
    page.click("button:has-text('Redeem')")
    page.wait_for_url("**/billing")
    assert "$5.00 added" in page.inner_text(".alert.ok")
    assert "$5.00" in page.inner_text(".stat.accent")
    page.fill("input[name=code]", code)
    page.click("button:has-text('Redeem')")
    assert "already been redeemed" in page.inner_text(".alert.error")

    # ---- use the key with the OpenAI SDK; see usage and the charge -----------------------------
    reply = _chat(env, key)
    assert reply.choices[0].message.content
    env.settle_all()
    account = env.call(env.services.accounts.by_email("alice@example.com"))
    charged = 5_000_000 - env.balance(account.id)
    assert charged > 0
    page.goto("/usage")
    page.wait_for_selector(".chart .uplot")
    assert "gpt-test" in page.inner_text("body")
    table = page.locator("table").last.inner_text()
    assert "production" in table and "gpt-test" in table
    shots(page, "08-usage")
    page.goto("/billing")
    assert "charge" in page.inner_text("table")
    shots(page, "09-billing")
    page.goto("/")
    page.wait_for_selector(".chart .uplot")
    assert "1 request today" in page.inner_text(".stats")
    shots(page, "10-dashboard")
    page.goto("/keys")
    assert page.locator("tr[data-key-row] td.num").first.inner_text() == "1"

    # ---- other pages --------------------------------------------------------------------------
    for path, name in (("/models", "11-models"), ("/docs", "12-docs"), ("/account", "13-account")):
        page.goto(path)
        shots(page, name)
    page.goto("/docs")
    assert f'base_url="{env.url}/v1"' in page.inner_text("#s-py")
    page.click("#openai-python button.copy")
    assert env.url + "/v1" in page.evaluate("navigator.clipboard.readText()")

    # ---- public key lookup (another browser, not signed in) -----------------------------------
    anon = watch(new_context().new_page(), console_errors)
    anon.goto("/key-usage")
    anon.fill("#key", key)
    anon.click("button:has-text('Look up')")
    anon.wait_for_selector("#key-usage-result .card")
    text = anon.inner_text("#key-usage-result")
    assert "production" in text and "Requests" in text
    assert key not in anon.content()
    shots(anon, "14-key-usage")

    # ---- a browser that does not hold the key gets a placeholder --------------------------------
    other = watch(new_context().new_page(), console_errors)
    other.goto("/login")
    other.fill("#email", "alice@example.com")
    other.fill("#password", "correct horse battery")
    other.click("button:has-text('Sign in')")
    other.wait_for_url(re.compile(r".*/$"))
    other.goto("/keys")
    other.click("tr[data-key-row] button:has-text('Copy Connection Info')")
    block = other.evaluate("navigator.clipboard.readText()")
    assert key not in block
    assert "does not hold" in block and "OPENAI_API_KEY=<YOUR_API_KEY>" in block

    # ---- delete with confirmation → 401 ----------------------------------------------------------
    page.goto("/keys")
    page.click("tr[data-key-row] button:has-text('Delete')")
    page.wait_for_selector("#confirm-dialog[open]")
    shots(page, "15-delete-confirm")
    page.click("#confirm-dialog button:has-text('Cancel')")
    assert page.locator("tr[data-key-row]").count() == 1
    _chat(env, key)  # still works after cancelling
    page.click("tr[data-key-row] button:has-text('Delete')")
    page.click("#confirm-ok")
    page.wait_for_selector(".alert.ok")
    assert page.locator("tr[data-key-row]").count() == 0
    assert page.evaluate("localStorage.getItem('a2agent.keys.' + document.body.dataset.keyScope)") == "{}"
    with pytest.raises(openai.AuthenticationError):
        _chat(env, key)
    env.settle_all()
    assert not console_errors, console_errors


def test_admin_suspends_user(env: Any, new_context: Any, shots: Any, console_errors: list[str]) -> None:
    admin = env.account("root@example.com", admin=True)
    user = env.account("bob@example.com", balance_usd=3)
    user_key = env.key(user.id, "bob-laptop")
    _chat(env, user_key)
    env.settle_all()
    env.call(env.services.ledger.create_codes(1_000_000, 2))

    page = watch(new_context().new_page(), console_errors)
    page.goto("/login")
    page.fill("#email", "root@example.com")
    page.fill("#password", "password123")
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r".*/$"))
    assert "Admin" in page.inner_text(".sidebar")

    page.goto("/admin/users")
    page.fill("input[name=q]", "bob@")
    page.click("button:has-text('Search')")
    rows = page.locator("tbody tr")
    assert rows.count() == 1 and "bob@example.com" in rows.inner_text()
    assert "root@example.com" not in page.inner_text("tbody")
    page.goto("/admin/users")
    shots(page, "20-admin-users")
    page.click("text=bob@example.com")
    page.wait_for_selector(".chart .uplot")
    assert "bob-laptop" in page.inner_text("body")
    shots(page, "21-admin-user")

    # adjust balance with a note; limits
    page.fill("#amount", "2.50")
    page.fill("#note", "goodwill credit")
    page.click("button:has-text('Apply adjustment')")
    assert "Balance adjusted by $2.50" in page.inner_text(".alert.ok")
    page.fill("#rpm", "120")
    page.fill("#tpm", "50000")
    page.click("button:has-text('Save limits')")
    assert "Rate limits saved" in page.inner_text(".alert.ok")
    bob = env.call(env.services.accounts.get(user.id))
    assert (bob.rpm_limit, bob.tpm_limit) == (120, 50000)

    # suspend → the user's key gets 403 at once
    page.click("button:has-text('Suspend')")
    page.click("#confirm-ok")
    page.wait_for_selector(".alert.ok")
    assert "suspended" in page.inner_text(".alert.ok")
    with pytest.raises(openai.PermissionDeniedError) as info:
        _chat(env, user_key)
    assert "suspended" in str(info.value)
    page.click("button:has-text('Unsuspend')")
    page.wait_for_selector(".alert.ok")
    _chat(env, user_key)
    env.settle_all()

    for path, name in (("/admin/usage", "22-admin-usage"), ("/admin/channels", "23-admin-channels"),
                       ("/admin/models", "24-admin-models"), ("/admin/codes", "25-admin-codes"),
                       ("/admin/settings", "26-admin-settings")):
        page.goto(path)
        shots(page, name)

    # test a channel's connection (htmx fragment)
    page.goto("/admin/channels")
    page.locator("tr", has_text="oai").locator("button:has-text('Test')").click()
    page.wait_for_selector("[id^=probe-] .badge")
    assert "OK" in page.inner_text("[id^=probe-] .badge")
    shots(page, "27-admin-channel-test")

    # redemption codes are shown once
    page.goto("/admin/codes")
    page.fill("#amount", "20")
    page.fill("#count", "3")
    page.click("button:has-text('Create codes')")
    codes = page.inner_text("#new-codes").split()
    assert len(codes) == 3 and all(c.startswith("A2A-") for c in codes)
    shots(page, "28-admin-codes-created")
    page.goto("/admin/codes")
    assert codes[0] not in page.content()

    # sign-up off → the sign-up page says so
    page.goto("/admin/settings")
    page.click("button:has-text('Turn sign-up off')")
    page.wait_for_selector(".alert.ok")
    anon = new_context().new_page()
    anon.goto("/signup")
    assert "turned off" in anon.inner_text(".auth-card")
    assert anon.locator("text=Create an account").count() == 0
    shots(anon, "29-signup-off")
    assert admin.id != user.id
    assert not console_errors, console_errors
