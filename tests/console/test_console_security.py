"""Console security over real HTTP: headers and CSP, cookies, CSRF, login throttling without
user enumeration, sign-up toggle, session revocation."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from a2agent.auth.accounts import NotFound

from tests.support.gateway import ThreadedGateway, make_settings

USER_PAGES = ["/", "/keys", "/usage", "/billing", "/models", "/docs", "/account", "/key-usage"]
ADMIN_PAGES = ["/admin/users", "/admin/usage", "/admin/channels", "/admin/channels/1", "/admin/models",
               "/admin/codes", "/admin/settings"]
PUBLIC_PAGES = ["/login", "/signup", "/key-usage", "/docs", "/no-such-page"]

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.I)
INLINE_STYLE = re.compile(r"<[^>]+\sstyle\s*=", re.I)


def _check_headers(r: httpx.Response) -> None:
    csp = r.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp, r.url
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp
    assert r.headers.get("x-content-type-options") == "nosniff"
    assert r.headers.get("referrer-policy") in ("same-origin", "strict-origin-when-cross-origin", "no-referrer")
    assert r.headers.get("x-frame-options") == "DENY"


def _check_html(r: httpx.Response) -> None:
    html = r.text
    assert not INLINE_SCRIPT.search(html), (r.url, INLINE_SCRIPT.search(html))
    assert not INLINE_HANDLER.search(html), (r.url, INLINE_HANDLER.search(html))
    assert not INLINE_STYLE.search(html), (r.url, INLINE_STYLE.search(html))
    assert "javascript:" not in html
    # nothing is loaded from another origin (no CDN)
    assert not re.search(r"""\s(src|href)\s*=\s*["']?(https?:)?//""", html), r.url


def test_headers_csp_and_no_inline_code(env: Any, client_for: Any) -> None:
    env.account("admin@example.com", admin=True)
    admin = client_for("admin@example.com")
    for path in USER_PAGES + ADMIN_PAGES:
        r = admin.get(path)
        assert r.status_code == 200, path
        _check_headers(r)
        _check_html(r)
        assert r.headers["cache-control"] == "no-store"
    anon = client_for()
    for path in PUBLIC_PAGES:
        r = anon.get(path)
        assert r.status_code in (200, 404), path
        _check_headers(r)
        _check_html(r)
    r = anon.get("/static/console.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    _check_headers(r)
    for asset in ("vendor/htmx.min.js", "vendor/uplot.min.js", "vendor/uplot.min.css",
                  "vendor/inter-latin-wght-normal.woff2", "console.css", "favicon.svg"):
        assert anon.get("/static/" + asset).status_code == 200, asset
    # console routes never shadow the API or operations endpoints
    assert anon.get("/healthz").json() == {"status": "ok"}
    assert anon.get("/v1/models").status_code == 401
    assert anon.get("/v1/nope").headers["content-type"].startswith("application/json")
    assert anon.http.head("/").status_code == 200


def test_session_cookie_flags(env: Any, client_for: Any) -> None:
    env.account("c@example.com")
    c = client_for()
    r = c.get("/login")
    pre = r.headers["set-cookie"]
    assert "HttpOnly" in pre and "SameSite=lax" in pre.replace("Lax", "lax")
    r = c.login("c@example.com")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("a2a_session=")
    assert "HttpOnly" in cookie and re.search(r"SameSite=lax", cookie, re.I) and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on loopback
    assert "password" not in cookie


def test_secure_cookie_behind_https(tmp_path: Path) -> None:
    """With an https public URL every cookie is Secure (a browser then sends them only over
    https, so the test replays the pre-sign-in cookie by hand on this plain-http loopback)."""
    settings = make_settings(tmp_path / "data", public_url="https://gw.example.com")
    with ThreadedGateway(settings) as gw, httpx.Client(base_url=gw.url) as http:
        gw.call(gw.gateway.services.accounts.create("s@example.com", "password123"))
        page = http.get("/login")
        pre = page.headers["set-cookie"]
        assert "Secure" in pre
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        r = http.post("/login", data={"csrf": token, "email": "s@example.com", "password": "password123"},
                      headers={"cookie": pre.split(";", 1)[0]})
        assert r.status_code == 303
        assert "Secure" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
        assert "https://gw.example.com/v1" in http.get("/docs").text


def test_csrf_required_on_every_form(env: Any, client_for: Any) -> None:
    acc = env.account("victim@example.com")
    c = client_for("victim@example.com")
    assert c.csrf
    before = len(env.call(env.services.accounts.list_keys(acc.id)))
    for data, headers in (({}, {}), ({"csrf": "forged"}, {}),
                          ({"csrf": c.csrf}, {"origin": "https://evil.example"})):
        r = c.post("/keys", {"label": "x", **data}, csrf=False, headers=headers)
        assert r.status_code == 403, (data, headers)
        assert "Form expired" in r.text
    assert len(env.call(env.services.accounts.list_keys(acc.id))) == before
    assert c.post("/keys", {"label": "ok"}, headers={"origin": env.url}).status_code == 200
    # sign-in forms need the pre-session token too (login CSRF)
    fresh = httpx.Client(base_url=env.url)
    r = fresh.post("/login", data={"email": "victim@example.com", "password": "password123"})
    assert r.status_code == 403 and "a2a_session" not in r.headers.get("set-cookie", "")
    r = fresh.post("/logout", data={})
    assert r.status_code == 403
    fresh.close()


def test_login_messages_do_not_enumerate_and_throttle(env: Any, client_for: Any) -> None:
    env.account("real@example.com")
    c = client_for()
    c.get("/login")
    wrong_pw = c.post("/login", {"email": "real@example.com", "password": "nope-nope"})
    no_user = c.post("/login", {"email": "ghost@example.com", "password": "nope-nope"})
    assert wrong_pw.status_code == no_user.status_code == 400
    msg = re.compile(r'<div class="alert error"[^>]*>(.*?)</div>', re.S)
    assert msg.search(wrong_pw.text).group(1) == msg.search(no_user.text).group(1) \
        == "Email or password is incorrect."
    # per email: after 8 failures even the right password is refused, with a clear message
    for _ in range(7):
        assert c.post("/login", {"email": "real@example.com", "password": "bad"}).status_code == 400
    r = c.post("/login", {"email": "real@example.com", "password": "password123"})
    assert r.status_code == 429 and "Too many attempts" in r.text and "minute" in r.text
    # the same answer for an email without an account
    for _ in range(8):
        c.post("/login", {"email": "ghost@example.com", "password": "bad"})
    r = c.post("/login", {"email": "ghost@example.com", "password": "bad"})
    assert r.status_code == 429 and "Too many attempts" in r.text


def test_login_throttle_per_ip(env: Any, client_for: Any) -> None:
    env.account("ok@example.com")
    c = client_for()
    c.get("/login")
    for i in range(30):
        assert c.post("/login", {"email": f"n{i}@example.com", "password": "bad"}).status_code == 400
    r = c.post("/login", {"email": "ok@example.com", "password": "password123"})
    assert r.status_code == 429 and "Too many attempts" in r.text


def test_signup_rules_and_toggle(env: Any, client_for: Any) -> None:
    env.account("boss@example.com", admin=True)
    env.account("taken@example.com")
    c = client_for()
    c.get("/signup")
    r = c.post("/signup", {"email": "not-an-email", "password": "longenough", "confirm": "longenough"})
    assert r.status_code == 400 and "valid email" in r.text
    r = c.post("/signup", {"email": "n@example.com", "password": "short", "confirm": "short"})
    assert r.status_code == 400 and "at least 8" in r.text
    r = c.post("/signup", {"email": "n@example.com", "password": "longenough", "confirm": "different"})
    assert r.status_code == 400 and "do not match" in r.text
    r = c.post("/signup", {"email": "taken@example.com", "password": "longenough", "confirm": "longenough"})
    assert r.status_code == 400 and "already exists" not in r.text and "taken@example.com" in r.text

    admin = client_for("boss@example.com")
    assert admin.post("/admin/settings", {"signup_enabled": "0"}).status_code == 303
    r = client_for().get("/signup")
    assert r.status_code == 403 and "turned off" in r.text
    login = client_for().get("/login")
    assert 'href="/signup"' not in login.text
    d = client_for()
    d.get("/login")
    r = d.post("/signup", {"email": "late@example.com", "password": "longenough", "confirm": "longenough"})
    assert r.status_code == 403
    with pytest.raises(NotFound):
        env.call(env.services.accounts.by_email("late@example.com"))
    assert admin.post("/admin/settings", {"signup_enabled": "1"}).status_code == 303
    e = client_for()
    e.get("/signup")
    r = e.post("/signup", {"email": "late@example.com", "password": "longenough", "confirm": "longenough"})
    assert r.status_code == 303 and r.headers["location"] == "/keys"
    assert "a2a_session=" in r.headers["set-cookie"]


def test_sign_out_password_change_and_suspension_end_sessions(env: Any, client_for: Any) -> None:
    env.account("root@example.com", admin=True)
    user = env.account("u@example.com")
    one = client_for("u@example.com")
    two = client_for("u@example.com")
    stolen = dict(one.http.cookies)

    # sign out: the cookie is dead server-side, even if replayed
    assert one.post("/logout").status_code == 303
    replay = httpx.Client(base_url=env.url, cookies=stolen)
    r = replay.get("/keys")
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    replay.close()

    # password change: wrong current refused; success keeps this session, ends the others
    three = client_for("u@example.com")
    r = two.post("/account/password", {"current": "bad", "password": "newpassword1", "confirm": "newpassword1"})
    assert r.status_code == 400 and "current password is incorrect" in r.text
    r = two.post("/account/password", {"current": "password123", "password": "newpassword1",
                                       "confirm": "newpassword1"})
    assert r.status_code == 303
    assert two.get("/keys").status_code == 200
    assert three.get("/keys").status_code == 303
    assert client_for().login("u@example.com").status_code == 400
    assert client_for().login("u@example.com", "newpassword1").status_code == 303

    # suspension: sessions end at once and sign-in is refused
    admin = client_for("root@example.com")
    assert admin.post(f"/admin/users/{user.id}/suspend", {"suspended": "1"}).status_code == 303
    assert two.get("/keys").status_code == 303
    r = client_for().login("u@example.com", "newpassword1")
    assert r.status_code == 403 and "suspended" in r.text
    # an admin cannot suspend themselves
    me = env.call(env.services.accounts.by_email("root@example.com"))
    admin.post(f"/admin/users/{me.id}/suspend", {"suspended": "1"})
    assert not env.call(env.services.accounts.get(me.id)).suspended


def test_next_parameter_is_same_site_only(env: Any, client_for: Any) -> None:
    env.account("n@example.com")
    for nxt, expected in (("/usage?period=7d", "/usage?period=7d"), ("//evil.example/x", "/"),
                          ("https://evil.example", "/"), ("/\\evil.example", "/")):
        c = client_for()
        c.get("/login")
        r = c.post("/login", {"email": "n@example.com", "password": "password123", "next": nxt})
        assert r.status_code == 303 and r.headers["location"] == expected, nxt


def test_throttle_is_shared_through_redis_and_survives_its_loss(tmp_path: Path) -> None:
    """Two workers (two Throttle objects) count failed sign-ins together through Redis; with
    Redis unreachable the count falls back to the process instead of failing sign-in."""
    import asyncio
    import os
    import uuid

    from a2agent.config import load_settings
    from a2agent.console.session import Throttle

    url = os.environ.get("A2AGENT_TEST_REDIS", "redis://127.0.0.1:6379/0")
    ident = f"{uuid.uuid4().hex}@example.com"

    async def run(redis_url: str) -> tuple[int, int]:
        settings = load_settings(environ={"A2AGENT_DATA_DIR": str(tmp_path),
                                          "A2AGENT_REDIS_URL": redis_url}, materialize=False)
        one, two = Throttle(settings), Throttle(settings)
        for _ in range(4):
            await one.hit("login-email", ident)
            await two.hit("login-email", ident)
        shared = await two.blocked("login-email", ident)
        await one.clear("login-email", ident)
        return shared, await one.blocked("login-email", ident)

    try:
        import redis

        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except Exception:  # noqa: BLE001
        pytest.skip(f"no Redis at {url}")
    blocked, after_clear = asyncio.run(run(url))
    assert blocked > 500 and after_clear == 0
    down_blocked, _ = asyncio.run(run("redis://127.0.0.1:1/0"))
    assert down_blocked == 0  # per-process fallback: each object counted only its own 4
