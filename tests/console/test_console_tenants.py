"""Tenant isolation: one account can neither see nor change another's keys, usage or ledger;
non-admins get nothing from /admin; signed-out visitors get nothing at all."""

from __future__ import annotations

from typing import Any

import httpx
import openai

from tests.console.conftest import ConsoleClient


def _use(env: Any, key: str, model: str = "gpt-test") -> None:
    client = openai.OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def _works(env: Any, key: str) -> bool:
    r = httpx.get(env.url + "/v1/models", headers={"authorization": f"Bearer {key}"})
    return r.status_code == 200


def _admin_requests(victim: Any, key_id: int) -> list[tuple[str, str, dict[str, str]]]:
    a = victim.id
    return [
        ("GET", "/admin", {}), ("GET", "/admin/users", {}), ("GET", f"/admin/users/{a}", {}),
        ("GET", "/admin/codes", {}), ("GET", "/admin/usage", {}), ("GET", "/admin/settings", {}),
        ("GET", "/admin/channels", {}), ("GET", "/admin/channels/1", {}), ("GET", "/admin/models", {}),
        ("POST", f"/admin/users/{a}/suspend", {"suspended": "1"}),
        ("POST", f"/admin/users/{a}/balance", {"amount": "-5", "note": "steal"}),
        ("POST", f"/admin/users/{a}/limits", {"rpm": "1", "tpm": "1"}),
        ("POST", f"/admin/users/{a}/keys/{key_id}/delete", {}),
        ("POST", "/admin/codes", {"amount": "100", "count": "1"}),
        ("POST", "/admin/settings", {"signup_enabled": "0"}),
        ("POST", "/admin/channels", {"name": "evil", "protocol": "openai", "base_url": "http://evil.example"}),
        ("POST", "/admin/channels/1", {"base_url": "http://evil.example"}),
        ("POST", "/admin/channels/1/toggle", {}), ("POST", "/admin/channels/1/test", {}),
        ("POST", "/admin/channels/1/delete", {}),
        ("POST", "/admin/models", {"model_id": "x", "channel": "oai"}),
        ("POST", "/admin/models/prices", {"model_id": "gpt-test", "input": "0", "output": "0"}),
        ("POST", "/admin/models/remove-route", {"model_id": "gpt-test", "channel": "oai"}),
        ("POST", "/admin/models/delete", {"model_id": "gpt-test"}),
    ]


def _state(env: Any, victim: Any) -> tuple[Any, ...]:
    acc = env.call(env.services.accounts.get(victim.id))
    channels = [(c.name, c.base_url, c.enabled) for c in env.call(env.services.catalog.list_channels())]
    models = [(m.model_id, m.prices, len(m.routes)) for m in env.call(env.services.catalog.list_models())]
    codes = len(env.call(env.services.ledger.list_codes()))
    return (acc.suspended, acc.balance_micro, acc.rpm_limit, acc.tpm_limit, channels, models, codes)


def test_accounts_cannot_reach_each_other(env: Any, client_for: Any) -> None:
    alice = env.account("alice@example.com")
    bob = env.account("bob@example.com")
    env.call(env.services.ledger.adjust(alice.id, 1_000_000, note="alice-secret-note"))
    a_key = env.key(alice.id, "alice-prod")
    a_key_id = env.call(env.services.accounts.list_keys(alice.id))[0].id
    _use(env, a_key, "claude-test")
    env.settle_all()
    b = client_for("bob@example.com")
    before = _state(env, alice)

    # delete someone else's key → 404, and the key keeps working
    r = b.post(f"/keys/{a_key_id}/delete")
    assert r.status_code == 404 and "alice" not in r.text
    assert _works(env, a_key)
    # filter usage by someone else's key → 404
    r = b.get(f"/usage?key={a_key_id}")
    assert r.status_code == 404 and "alice" not in r.text
    for bad in ("abc", "-1", "99999999", "1" * 30):
        assert b.get(f"/usage?key={bad}").status_code == 404
        assert b.post(f"/keys/{bad}/delete").status_code == 404
    # nothing of Alice's on Bob's pages
    for path in ("/", "/keys", "/usage", "/usage?period=90d", "/billing", "/account"):
        html = b.get(path).text
        for secret in ("alice", "claude-test</code></td>\n      <td", a_key[:11], "alice-secret-note"):
            assert secret not in html, (path, secret)
    assert "No requests in this period" in b.get("/usage").text
    assert "1 entry, newest first" in b.get("/billing").text  # Bob's own top-up only

    # admin pages and actions are refused to a non-admin, and change nothing
    for method, path, data in _admin_requests(alice, a_key_id):
        r = b.get(path) if method == "GET" else b.post(path, data)
        assert r.status_code == 403, (method, path)
        assert "Admins only" in r.text and "alice@example.com" not in r.text
    assert _state(env, alice) == before
    assert _works(env, a_key)
    assert bob.id != alice.id


def test_signed_out_visitors_get_nothing(env: Any) -> None:
    alice = env.account("alice@example.com", admin=True)
    a_key = env.key(alice.id, "alice-prod")
    a_key_id = env.call(env.services.accounts.list_keys(alice.id))[0].id
    before = _state(env, alice)
    anon = ConsoleClient(env.url)
    for path in ("/", "/keys", "/usage", "/billing", "/models", "/account", f"/usage?key={a_key_id}"):
        r = anon.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), path
    anon.get("/login")  # a valid pre-sign-in CSRF token does not make anyone signed in
    posts = [("POST", f"/keys/{a_key_id}/delete", {}), ("POST", "/keys", {"label": "x"}),
             ("POST", "/billing/redeem", {"code": "A2A-X"}),
             ("POST", "/account/password", {"current": "x", "password": "yyyyyyyy", "confirm": "yyyyyyyy"}),
             *_admin_requests(alice, a_key_id)]
    for method, path, data in posts:
        r = anon.get(path) if method == "GET" else anon.post(path, data)
        assert r.status_code == 303 and r.headers["location"].startswith("/login"), (method, path)
    assert _state(env, alice) == before
    assert _works(env, a_key)
    anon.close()


def test_admin_sees_and_manages_other_accounts(env: Any, client_for: Any) -> None:
    root = env.account("root@example.com", admin=True)
    carol = env.account("carol@example.com", balance_usd=2)
    key = env.key(carol.id, "carol-ci")
    key_id = env.call(env.services.accounts.list_keys(carol.id))[0].id
    _use(env, key)
    env.settle_all()
    admin = client_for("root@example.com")

    users = admin.get("/admin/users?q=carol").text
    assert f'href="/admin/users/{carol.id}"' in users and f'href="/admin/users/{root.id}"' not in users
    page = admin.get(f"/admin/users/{carol.id}").text
    assert "carol-ci" in page and "gpt-test" in page
    assert admin.get("/admin/users/999999").status_code == 404
    assert admin.get("/admin/users/abc").status_code == 404
    assert admin.post(f"/admin/users/{carol.id}/keys/999999/delete").status_code == 404
    # a key id of another account under this account's URL → 404, nothing deleted
    other = env.account("dave@example.com")
    other_key = env.key(other.id)
    other_id = env.call(env.services.accounts.list_keys(other.id))[0].id
    assert admin.post(f"/admin/users/{carol.id}/keys/{other_id}/delete").status_code == 404
    assert _works(env, other_key)

    # balance: validation, then an adjustment with a note
    for amount, note in (("abc", "x"), ("0", "x"), ("1.0000001", "x"), ("5", "")):
        r = admin.post(f"/admin/users/{carol.id}/balance", {"amount": amount, "note": note})
        assert r.status_code == 400, amount
    before = env.balance(carol.id)
    r = admin.post(f"/admin/users/{carol.id}/balance", {"amount": "-1.5", "note": "refund reversal"})
    assert r.status_code == 303
    assert env.balance(carol.id) == before - 1_500_000
    entry = env.call(env.services.ledger.entries(carol.id, limit=1))[0]
    assert entry.note.startswith("refund reversal") and entry.amount_micro == -1_500_000

    # rate limits: numbers, then blank = back to the defaults
    assert admin.post(f"/admin/users/{carol.id}/limits", {"rpm": "x"}).status_code == 400
    assert admin.post(f"/admin/users/{carol.id}/limits", {"rpm": "-1"}).status_code == 400
    admin.post(f"/admin/users/{carol.id}/limits", {"rpm": "60", "tpm": "0"})
    acc = env.call(env.services.accounts.get(carol.id))
    assert (acc.rpm_limit, acc.tpm_limit) == (60, 0)
    admin.post(f"/admin/users/{carol.id}/limits", {"rpm": "", "tpm": ""})
    acc = env.call(env.services.accounts.get(carol.id))
    assert (acc.rpm_limit, acc.tpm_limit) == (None, None)

    # deleting a user's key from the admin page: 401 at once
    assert admin.post(f"/admin/users/{carol.id}/keys/{key_id}/delete").status_code == 303
    assert not _works(env, key)

    # usage across accounts
    usage = admin.get("/admin/usage").text
    assert "carol@example.com" in usage and "gpt-test" in usage
