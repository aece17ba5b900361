"""English and Simplified Chinese (Jinja i18n + Babel catalogues): chosen by Accept-Language,
by the switcher (a cookie, and remembered on the account), in pages and flash messages."""

from __future__ import annotations

import re
from typing import Any

import httpx

from a2agent.console import i18n


def test_accept_language_negotiation() -> None:
    assert i18n.from_accept_language("zh-CN,zh;q=0.9,en;q=0.8") == "zh-CN"
    assert i18n.from_accept_language("fr-FR, zh-Hans;q=0.5, en;q=0.3") == "zh-CN"
    assert i18n.from_accept_language("en-GB,zh;q=0.9") == "en"
    assert i18n.from_accept_language("fr, de") is None
    assert i18n.from_accept_language("zh;q=0, en") == "en"
    assert i18n.pick("en", "zh-CN", "zh-CN") == "en"  # the switcher wins
    assert i18n.pick(None, "zh-CN", "en") == "zh-CN"  # then the account's choice
    assert i18n.pick(None, None, "de") == "en"


def test_every_catalogue_entry_is_translated() -> None:
    zh = i18n.translations("zh-CN")
    from babel.messages.pofile import read_po

    with (i18n.LOCALE_DIR / "zh_CN/LC_MESSAGES/messages.po").open("rb") as f:
        catalog = read_po(f)
    ids = [m.id for m in catalog if m.id]
    assert len(ids) > 200
    for m in catalog:
        if m.id:
            assert m.string and all(m.string) if isinstance(m.string, tuple) else m.string, m.id
    assert zh.gettext("API Keys") == "API 密钥"
    # placeholders survive translation
    for m in catalog:
        if isinstance(m.id, str) and "%(" in m.id:
            assert set(re.findall(r"%\((\w+)\)", m.id)) == set(re.findall(r"%\((\w+)\)", m.string)), m.id


def test_pages_follow_the_browser_then_the_switcher(env: Any, client_for: Any) -> None:
    zh = {"accept-language": "zh-CN,zh;q=0.9"}
    r = httpx.get(env.url + "/login", headers=zh)
    assert '<html lang="zh-Hans">' in r.text and "欢迎回来" in r.text
    assert r.headers["content-language"] == "zh-CN" and "Accept-Language" in r.headers["vary"]
    r = httpx.get(env.url + "/login", headers={"accept-language": "de-DE"})
    assert '<html lang="en">' in r.text and "Welcome back" in r.text
    # the switcher, signed out: a cookie
    c = client_for()
    c.http.headers["accept-language"] = "zh-CN"
    c.get("/login")
    r = c.post("/lang", {"lang": "en", "back": "/login"})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert "Welcome back" in c.get("/login").text
    assert c.post("/lang", {"lang": "zh-CN", "back": "//evil.example/x"}).headers["location"] == "/"


def test_choice_is_remembered_on_the_account(env: Any, client_for: Any) -> None:
    user = env.account("lang@example.com")
    env.key(user.id, "laptop")
    c = client_for("lang@example.com")
    assert "Your keys" in c.get("/keys").text
    r = c.post("/lang", {"lang": "zh-CN", "back": "/keys"})
    assert r.status_code == 303
    page = c.get("/keys").text
    assert "你的密钥" in page and "复制连接信息" in page and 'lang="zh-Hans"' in page
    assert env.call(env.services.accounts.get(user.id)).locale == "zh-CN"
    # another browser, no cookie, English Accept-Language: the account's choice holds
    other = client_for("lang@example.com")
    other.http.headers["accept-language"] = "en-US"
    keys_page = other.get("/keys").text
    assert "你的密钥" in keys_page
    # flash messages too
    key_id = re.search(r'action="/keys/(\d+)/disable"', keys_page).group(1)
    other.post(f"/keys/{key_id}/disable")
    assert "已停用" in other.get("/keys").text
    for path in ("/", "/requests", "/usage", "/models", "/docs", "/account", "/key-usage"):
        html = other.get(path).text
        assert 'lang="zh-Hans"' in html and "仪表盘" in html, path


def test_admin_overview_in_chinese(env: Any, client_for: Any) -> None:
    env.account("boss@example.com", admin=True)
    admin = client_for("boss@example.com")
    admin.post("/lang", {"lang": "zh-CN", "back": "/"})
    html = admin.get("/").text
    assert "网关总览" in html and "渠道 · 最近 24 小时" in html and "最近 7 天" in html
    assert "创建用户" in admin.get("/admin/users").text
    assert "关闭注册" in admin.get("/admin/settings").text
