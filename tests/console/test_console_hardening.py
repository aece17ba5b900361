"""Console hardening (issue 13): login throttling per (email, client address) with a progressive
delay, so nobody can lock a known user out from elsewhere; redirect targets validated."""

from __future__ import annotations

import re
import time
from pathlib import Path

from a2agent.console.core import same_site_path
from tests.conftest import _env
from tests.console.conftest import ConsoleClient
from tests.support.upstream import ScriptedUpstream


def _login(c: ConsoleClient, email: str, password: str, ip: str) -> int:
    c.get("/login", headers={"x-forwarded-for": ip})
    return c.post("/login", {"email": email, "password": password}, headers={"x-forwarded-for": ip}).status_code


def test_guessing_from_one_address_cannot_lock_the_owner_out_from_another(tmp_path: Path) -> None:
    with ScriptedUpstream() as up:
        for env in _env(tmp_path, up, None, trusted_proxies="127.0.0.1"):
            env.account("victim@example.com")
            attacker, owner = ConsoleClient(env.url), ConsoleClient(env.url)
            try:
                t0 = time.monotonic()
                statuses = [_login(attacker, "victim@example.com", "guess", "198.51.100.7") for _ in range(9)]
                assert statuses[:8] == [400] * 8 and statuses[8] == 429, statuses
                # failures 4..8 were answered after a growing delay (0.1 + 0.2 + 0.4 + 0.8 + 1.6 s)
                assert time.monotonic() - t0 >= 3.0
                # the right password from the attacker's address is refused too ...
                assert _login(attacker, "victim@example.com", "password123", "198.51.100.7") == 429
                # ... but the owner, elsewhere, signs in at once
                t0 = time.monotonic()
                assert _login(owner, "victim@example.com", "password123", "203.0.113.20") == 303
                assert time.monotonic() - t0 < 2.0
            finally:
                attacker.close()
                owner.close()


def test_redirect_targets_stay_on_this_site() -> None:
    for bad in ("//evil.example", "/\\evil.example", "https://evil.example", "/\t/evil.example",
                "/\r\nset-cookie: x=1", "/ /evil", "", None, "evil", "/\x00"):
        assert same_site_path(bad) == "/", bad
    assert same_site_path("/keys?x=1&y=%2F#top") == "/keys?x=1&y=%2F#top"
    assert same_site_path("/usage/模型") == "/usage/%E6%A8%A1%E5%9E%8B"


def test_login_next_and_hx_redirect_are_validated(env, client_for) -> None:
    env.account("nx@example.com")
    c = client_for()
    c.get("/login")
    r = c.post("/login", {"email": "nx@example.com", "password": "password123", "next": "/\t/evil.example"})
    assert r.status_code == 303 and r.headers["location"] == "/"
    c2 = client_for()
    c2.get("/login")
    r = c2.post("/login", {"email": "nx@example.com", "password": "password123", "next": "/keys\r\nx: y"},
                headers={"hx-request": "true"})
    assert r.status_code == 204 and r.headers["hx-redirect"] == "/"


def _sign_in(page, email: str) -> None:
    page.goto("/login")
    page.fill("#email", email)
    page.fill("#password", "password123")
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r".*/$"))


def _stores(page) -> dict:
    return page.evaluate("Object.fromEntries(Object.keys(localStorage).filter(k => k.startsWith('a2agent.keys'))"
                         ".map(k => [k, localStorage.getItem(k)]))")


def test_remembered_keys_are_per_account_and_cleared_at_sign_out(env, new_context) -> None:
    env.account("ann@example.com")
    env.account("ben@example.com")
    page = new_context().new_page()
    _sign_in(page, "ann@example.com")
    page.goto("/keys")
    page.click("button:has-text('Create Key')")
    page.fill("#label", "laptop")
    page.click("#create-key-dialog button[type=submit]")
    page.wait_for_selector("#new-key-dialog[open]")
    key = page.inner_text("#new-key-value").strip()
    page.click("text=I have saved my key")
    stores = _stores(page)
    assert len(stores) == 1 and key in next(iter(stores.values()))
    assert next(iter(stores)) != "a2agent.keys"  # scoped to the account, not shared by the browser
    # another account in the same browser session does not see it
    scope_ann = page.evaluate("document.body.dataset.keyScope")
    page.click("button:has-text('Sign out')")
    page.wait_for_url("**/login")
    assert _stores(page) == {}  # cleared at sign-out
    _sign_in(page, "ben@example.com")
    assert page.evaluate("document.body.dataset.keyScope") not in ("", scope_ann)
