"""Every console page at 1280×800 and 390×844, light and dark, signed out, as a user and as an
admin: axe-core (pinned, from npm, injected by Playwright) finds no serious or critical
violation; nothing overflows sideways on a phone; the navigation collapses; key rows become
cards whose actions are reachable; dialogs fit. The key controls are driven through the UI.
Screenshots and a report (page, viewport, theme, axe result, load time) go to
test-artifacts/console/layout."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import PASSWORD, watch

pytestmark = pytest.mark.timeout(900)

ROOT = Path(__file__).resolve().parents[2]
AXE_JS = Path(os.environ.get("A2AGENT_AXE_JS", ROOT / ".tools/node_modules/axe-core/axe.min.js"))
SIZES = {"desktop": (1280, 800), "mobile": (390, 844)}
# every viewport × theme in English; Chinese on a desktop in light and a phone in dark
COMBOS = [("desktop", "light", "en-US"), ("desktop", "dark", "en-US"), ("mobile", "light", "en-US"),
          ("mobile", "dark", "en-US"), ("desktop", "light", "zh-CN"), ("mobile", "dark", "zh-CN")]
SIGNED_OUT = ["/login", "/signup", "/docs", "/key-usage"]
USER_PAGES = ["/", "/keys", "/usage", "/requests", "/requests/{rid}", "/billing", "/models", "/docs",
              "/key-usage", "/account"]
ADMIN_PAGES = ["/", "/admin/users", "/admin/users/{uid}", "/admin/usage", "/admin/requests",
               "/admin/channels", "/admin/models", "/admin/codes", "/admin/settings"]


def _axe(page: Any) -> list[dict[str, Any]]:
    """Serious and critical violations on the page as it stands (WCAG 2.x A/AA + best practice)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.add_script_tag(content=AXE_JS.read_text())
    result = page.evaluate("""async () => {
        const r = await window.axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""")
    return [v for v in result if v["impact"] in ("serious", "critical")]


def _sign_in(page: Any, email: str) -> None:
    page.goto("/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("form[action='/login'] button[type=submit]")  # in any language
    page.wait_for_url(re.compile(r".*/$"))


def _load_ms(page: Any) -> int:
    return int(page.evaluate(
        "(() => { const n = performance.getEntriesByType('navigation')[0];"
        " return n ? n.loadEventEnd - n.startTime : 0; })()"))


def _no_sideways_scroll(page: Any, path: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    inner = page.evaluate("window.innerWidth")
    assert width <= inner, f"{path}: page is {width}px wide in a {inner}px window"


@pytest.fixture
def tenants(env: Any) -> dict[str, Any]:
    env.account("root@example.com", admin=True)
    user = env.account("ann@example.com", balance_usd=5)
    key = env.key(user.id, "laptop")
    env.key(user.id, "a-much-longer-label-for-the-ci-runner")
    import httpx

    for model in ("gpt-test", "claude-test", "missing-model"):
        httpx.post(env.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                   json={"model": model, "messages": [{"role": "user", "content": "hi"}]}, timeout=20)
    env.settle_all()
    rid = env.records(user.id)[0].id
    return {"uid": user.id, "rid": rid, "key": key}


def test_every_page_accessible_and_fits(env: Any, browser: Any, artifacts: Path, tenants: Any,
                                        console_errors: list[str]) -> None:
    if not AXE_JS.exists():
        pytest.skip("axe-core is not installed (scripts/test installs it into .tools)")
    folder = artifacts / "console" / "layout"
    folder.mkdir(parents=True, exist_ok=True)
    report: list[dict[str, Any]] = []
    failures: list[str] = []
    for size, theme, lang in COMBOS:
        width, height = SIZES[size]
        for who, pages in (("signed-out", SIGNED_OUT), ("user", USER_PAGES), ("admin", ADMIN_PAGES)):
            # one browser context per (viewport, theme, language, visitor)
            ctx = browser.new_context(base_url=env.url, viewport={"width": width, "height": height},
                                      color_scheme=theme, bypass_csp=True, locale=lang)
            page = watch(ctx.new_page(), console_errors)
            if who != "signed-out":
                _sign_in(page, "root@example.com" if who == "admin" else "ann@example.com")
            for template in pages:
                path = template.format(**tenants)
                page.goto(path)
                page.wait_for_load_state("networkidle")
                load = _load_ms(page)
                violations = _axe(page)
                _no_sideways_scroll(page, path)
                if lang == "zh-CN":
                    assert page.evaluate("document.documentElement.lang") == "zh-Hans", path
                if violations:
                    failures.append(f"{who} {path} {size} {theme} {lang}: {violations}")
                report.append({"who": who, "page": path, "size": size, "theme": theme,
                               "lang": lang, "serious_or_critical": len(violations),
                               "load_ms": load})
                if theme == "light" or template in ("/keys", "/requests", "/login", "/"):
                    name = (who + path.replace("/", "_")).strip("_") or who
                    page.screenshot(path=str(folder / f"{name}-{size}-{theme}-{lang}.png"),
                                    full_page=True)
            ctx.close()
    (folder / "report.json").write_text(json.dumps(report, indent=1))
    lines = ["| who | page | viewport | theme | language | axe serious/critical | load ms |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['who']} | {r['page']} | {r['size']} | {r['theme']} | {r['lang']} "
              f"| {r['serious_or_critical']} | {r['load_ms']} |" for r in report]
    (folder / "report.md").write_text("\n".join(lines) + "\n")
    assert not failures, "\n".join(failures)
    assert not console_errors, console_errors


def test_phone_navigation_cards_and_dialogs(env: Any, browser: Any, artifacts: Path, tenants: Any,
                                            console_errors: list[str]) -> None:
    folder = artifacts / "console" / "layout"
    folder.mkdir(parents=True, exist_ok=True)
    ctx = browser.new_context(base_url=env.url, viewport={"width": 390, "height": 844})
    page = watch(ctx.new_page(), console_errors)
    _sign_in(page, "ann@example.com")
    page.goto("/keys")
    # the navigation is one bar; the content starts right under it
    toggle = page.locator(".nav-toggle")
    assert toggle.is_visible() and toggle.get_attribute("aria-expanded") == "false"
    assert not page.locator("#sidebar-menu").is_visible()
    top = page.locator("main h1").bounding_box()
    assert top is not None and top["y"] < 120, top
    toggle.click()
    assert page.locator("#sidebar-menu").is_visible() and toggle.get_attribute("aria-expanded") == "true"
    page.screenshot(path=str(folder / "phone-menu-open.png"))
    page.keyboard.press("Escape")
    assert not page.locator("#sidebar-menu").is_visible()
    # key rows are cards: every action inside the window
    for row in page.locator("tr[data-key-row]").all():
        for button in row.locator("button").all():
            box = button.bounding_box()
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    _no_sideways_scroll(page, "/keys")
    # the key's edit dialog fits and saves
    row = page.locator("tr[data-key-row]", has_text="laptop").first
    row.locator("button:has-text('Edit')").click()
    dialog = page.locator("dialog.edit-key[open]")
    box = dialog.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["height"] <= 844
    page.screenshot(path=str(folder / "phone-edit-key.png"))
    dialog.locator("input[name=name]").fill("laptop-renamed")
    dialog.locator("input[name=cap]").fill("2.5")
    dialog.locator("select[name=cap_period]").select_option("monthly")
    dialog.locator("input[name=models][value=claude-test]").check()
    dialog.locator("button:has-text('Save')").click()
    page.wait_for_selector(".alert.ok")
    card = page.locator("tr[data-key-row]", has_text="laptop-renamed")
    assert "Cap $2.50 / month" in card.inner_text() and "1 model" in card.inner_text()
    key = env.call(env.services.accounts.list_keys(tenants["uid"]))[0]
    assert (key.name, key.spend_cap_micro, key.spend_cap_period, key.model_list) == (
        "laptop-renamed", 2_500_000, "monthly", ["claude-test"])
    # disable from the card → the API refuses it at once; enable again
    card.locator("button:has-text('Disable')").click()
    page.wait_for_selector(".alert.ok")
    assert "Disabled" in page.locator("tr[data-key-row]", has_text="laptop-renamed").inner_text()
    import httpx

    r = httpx.post(env.url + "/v1/messages", headers={"x-api-key": tenants["key"], "anthropic-version": "2023-06-01"},
                   json={"model": "claude-test", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
    page.locator("tr[data-key-row]", has_text="laptop-renamed").locator("button:has-text('Enable')").click()
    page.wait_for_selector(".alert.ok")
    page.screenshot(path=str(folder / "phone-keys-after-edit.png"), full_page=True)
    # a bad cap is refused with a message, nothing changed
    page.locator("tr[data-key-row]", has_text="laptop-renamed").locator("button:has-text('Edit')").click()
    page.locator("dialog.edit-key[open] input[name=cap]").fill("lots")
    page.locator("dialog.edit-key[open] button:has-text('Save')").click()
    page.wait_for_selector(".alert.error")
    assert "Spend cap" in page.inner_text(".alert.error")
    # times are shown in the browser's zone, UTC on hover
    stamp = page.locator("tr[data-key-row] time").first
    assert "UTC" in (stamp.get_attribute("title") or "") and "UTC" not in stamp.inner_text()
    # the shown-once dialog fits a phone
    page.click("button:has-text('Create Key')")
    page.click("#create-key-dialog button[type=submit]")
    page.wait_for_selector("#new-key-dialog[open]")
    box = page.locator("#new-key-dialog").bounding_box()
    assert box is not None and box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844
    for button in page.locator("#new-key-dialog button").all():
        b = button.bounding_box()
        assert b is not None and b["x"] + b["width"] <= 390, b
    page.screenshot(path=str(folder / "phone-key-shown-once.png"))
    ctx.close()
    assert not console_errors, console_errors


def test_theme_toggle_is_remembered(env: Any, browser: Any, tenants: Any) -> None:
    ctx = browser.new_context(base_url=env.url, viewport={"width": 1280, "height": 800},
                              color_scheme="light")
    page = ctx.new_page()
    page.goto("/login")
    _sign_in(page, "ann@example.com")
    bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.click(".theme-toggle")
    dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert dark != bg and page.evaluate("document.documentElement.dataset.theme") == "dark"
    page.goto("/keys")
    page.wait_for_load_state("networkidle")
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == dark
    ctx.close()
