"""Admins land on the gateway dashboard (requests, failures and latency per channel, spend per
day, top accounts) and create users / reset passwords in the console; a new password is shown
once, in the response only."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.support import Script


def _chat(env: Any, key: str, model: str = "gpt-test") -> int:
    return httpx.post(env.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                      json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
                      timeout=20).status_code


def test_gateway_overview(env: Any, client_for: Any) -> None:
    env.account("root@example.com", admin=True)
    big = env.account("big@example.com", balance_usd=5)
    small = env.account("small@example.com", balance_usd=5)
    big_key, small_key = env.key(big.id), env.key(small.id)
    for _ in range(3):
        assert _chat(env, big_key) == 200
    assert _chat(env, small_key, "claude-test") == 200
    assert _chat(env, small_key, "nope") == 404
    env.upstream.enqueue(Script(status=400))
    assert _chat(env, small_key) == 400
    env.settle_all()

    admin = client_for("root@example.com")
    html = admin.get("/").text
    assert "Gateway overview" in html and "my own dashboard" in html
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<strong>(oai|ant)</strong>.*?</tr>", html, re.S)}
    assert set(rows) == {"oai", "ant"}
    cells = re.findall(r'class="num">([^<]*)<', rows["oai"])
    assert cells[:3] == ["4", "1", "25.0%"]  # 3 ok + 1 upstream failure
    assert "refused before routing" in html
    top = html[html.index("Top accounts"):]
    assert top.index("big@example.com") < top.index("small@example.com")
    assert "Spend per day as a table" in html
    assert "Gateway overview" not in admin.get("/?mine=1").text
    user = client_for("big@example.com")
    assert "Gateway overview" not in user.get("/").text


def test_create_user_and_reset_password(env: Any, client_for: Any) -> None:
    env.account("root@example.com", admin=True)
    admin = client_for("root@example.com")
    admin.get("/admin/users")
    r = admin.post("/admin/users/new", {"email": "new@example.com", "balance": "2.5"})
    assert r.status_code == 200 and "shown only now" in r.text
    password = re.search(r'<code id="new-password">([^<]+)</code>', r.text).group(1)
    assert "a2a_flash" not in r.headers.get("set-cookie", "")
    newbie = client_for()
    assert newbie.login("new@example.com", password).status_code == 303
    account = env.call(env.services.accounts.by_email("new@example.com"))
    assert account.balance_micro == 2_500_000 and account.role == "user"
    # a chosen password; a duplicate email or a short password is refused with a message
    r = admin.post("/admin/users/new", {"email": "op@example.com", "password": "long enough pw", "admin": "1"})
    assert r.status_code == 303
    assert env.call(env.services.accounts.by_email("op@example.com")).role == "admin"
    for bad in ({"email": "new@example.com"}, {"email": "x@example.com", "password": "short"},
                {"email": "not-an-email"}):
        r = admin.post("/admin/users/new", bad)
        assert r.status_code == 303
        assert "not created" in admin.get("/admin/users").text
    # reset: generated and shown once; the user's sessions end; the old password stops working
    admin.get(f"/admin/users/{account.id}")
    r = admin.post(f"/admin/users/{account.id}/password", {})
    fresh = re.search(r'<code id="new-password">([^<]+)</code>', r.text).group(1)
    assert fresh != password
    assert newbie.get("/keys").status_code == 303  # signed out
    assert client_for().login("new@example.com", password).status_code != 303
    assert client_for().login("new@example.com", fresh).status_code == 303
    # non-admins cannot
    env.account("plain@example.com")
    plain = client_for("plain@example.com")
    assert plain.post(f"/admin/users/{account.id}/password", {}).status_code == 403
    assert plain.post("/admin/users/new", {"email": "z@example.com"}).status_code == 403
