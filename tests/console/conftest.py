"""Console test helpers: an HTTP client that signs in and fills CSRF tokens, and a headless
Debian Chromium driven by Playwright."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
PASSWORD = "password123"  # what tests.conftest.Env.account() sets

_CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')
_CSRF_BODY = re.compile(r'data-csrf="([^"]*)"')


class ConsoleClient:
    """A browser-like HTTP client: keeps cookies, finds the CSRF token of the page it is on."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
        self.csrf = ""

    def get(self, path: str, **kw: Any) -> httpx.Response:
        r = self.http.get(path, **kw)
        self._remember(r.text)
        return r

    def _remember(self, html: str) -> None:
        m = _CSRF_BODY.search(html) or _CSRF_FIELD.search(html)
        if m and m.group(1):
            self.csrf = m.group(1)

    def post(self, path: str, data: dict[str, Any] | None = None, *, csrf: bool = True,
             **kw: Any) -> httpx.Response:
        body = dict(data or {})
        if csrf:
            body.setdefault("csrf", self.csrf)
        r = self.http.post(path, data=body, **kw)
        self._remember(r.text)
        return r

    def login(self, email: str, password: str = PASSWORD) -> httpx.Response:
        self.get("/login")
        r = self.post("/login", {"email": email, "password": password})
        if r.status_code == 303:
            self.get("/account")
        return r

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def client_for(env: Any) -> Iterator[Any]:
    made: list[ConsoleClient] = []

    def make(email: str | None = None) -> ConsoleClient:
        c = ConsoleClient(env.url)
        made.append(c)
        if email is not None:
            r = c.login(email)
            assert r.status_code == 303, r.text[:500]
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def browser(env: Any) -> Iterator[Any]:
    """Per test, and after ``env``: Playwright's sync API keeps an event loop running in this
    thread, which would break the asyncio.run() the gateway fixture's migrations use."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def new_context(browser: Any, env: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def make() -> Any:
        ctx = browser.new_context(base_url=env.url, viewport={"width": 1360, "height": 900})
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=env.url)
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture
def console_errors() -> list[str]:
    """Collects browser console errors and CSP violations of the pages a test opens."""
    return []


EXPECTED = re.compile(r"Failed to load resource: .* status of (400|403|404|429) ")


def watch(page: Any, errors: list[str], *, expect_404: bool = False) -> Any:
    """Record JS errors, CSP violations and failed resources. Forms that answer 400/403/429
    on purpose are expected; a 404 only where the test says so."""

    def on_console(message: Any) -> None:
        if message.type != "error":
            return
        m = EXPECTED.search(message.text)
        if m and (m.group(1) != "404" or expect_404):
            return
        errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page
