"""The console's per-app object: rendering, redirects with flash messages, and the guards that
wrap every endpoint (sign-in, admin role, CSRF, security headers)."""

from __future__ import annotations

import functools
from typing import Any, Awaitable, Callable
import hashlib
import hmac
from urllib.parse import quote

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from a2agent.console.banner import balance_banner
from a2agent.console.render import render_text, secure
from a2agent.console.session import CSRF_FIELD, Sessions, Throttle, Viewer, csrf_ok, is_https

FLASH_COOKIE = "a2a_flash"


Handler = Callable[..., Awaitable[Response]]


class Console:
    def __init__(self, gateway: Any) -> None:
        self.gw = gateway
        self.settings = gateway.settings
        self.services = gateway.services
        self.sessions = Sessions(gateway.services.db, gateway.settings)
        self.throttle = Throttle(gateway.settings)
        self._flash = URLSafeTimedSerializer(gateway.settings.secret_key, salt="a2agent-console-flash")

    # ---- responses -----------------------------------------------------------------------
    def base_url(self, request: Request) -> str:
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")

    def key_scope(self, viewer: Viewer | None) -> str:
        """An opaque per-account name for the browser's store of remembered keys (so one
        account never sees another's keys in a shared browser)."""
        if viewer is None:
            return ""
        mac = hmac.new(self.settings.secret_key.encode(), f"key-scope:{viewer.account_id}".encode(),
                       hashlib.sha256)
        return mac.hexdigest()[:20]

    def page(self, request: Request, template: str, viewer: Viewer | None = None, *,
             status: int = 200, **context: Any) -> Response:
        anon_new = None
        if viewer is not None:
            csrf = viewer.csrf
        else:
            csrf, is_new = self.sessions.anon_token(request)
            anon_new = csrf if is_new else None
        flash = self._read_flash(request)
        ctx = {
            "request": request,
            "viewer": viewer,
            "csrf": csrf,
            "csrf_field": CSRF_FIELD,
            "path": request.url.path,
            "base_url": self.base_url(request),
            "flash": flash,
            "key_scope": self.key_scope(viewer),
            "balance_banner": balance_banner(self.settings, viewer),
            "payments_enabled": self.settings.payments_enabled,
            **context,
        }
        response = HTMLResponse(render_text(template, ctx), status_code=status)
        if anon_new is not None:
            self.sessions.set_anon_cookie(request, response, anon_new)
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path="/")
        return secure(response)

    def redirect(self, request: Request, url: str, message: str | None = None,
                 kind: str = "ok") -> Response:
        url = same_site_path(url)  # never a header injection, never another site
        if request.headers.get("hx-request"):
            response: Response = Response(status_code=204, headers={"hx-redirect": url})
        else:
            response = RedirectResponse(url, status_code=303)
        if message:
            response.set_cookie(FLASH_COOKIE, self._flash.dumps({"m": message, "k": kind}),
                                max_age=120, path="/", httponly=True, samesite="lax",
                                secure=is_https(request, self.settings))
        return secure(response)

    def _read_flash(self, request: Request) -> dict[str, str] | None:
        raw = request.cookies.get(FLASH_COOKIE)
        if not raw:
            return None
        try:
            value = self._flash.loads(raw, max_age=120)
        except BadSignature:
            return None
        return value if isinstance(value, dict) else None

    def error(self, request: Request, status: int, title: str, message: str,
              viewer: Viewer | None = None) -> Response:
        return self.page(request, "error.html", viewer, status=status, status_code=status,
                         title=title, message=message)

    def not_found(self, request: Request, viewer: Viewer | None) -> Response:
        return self.error(request, 404, "Not found", "There is nothing here, or it is not yours.",
                          viewer)

    # ---- guards --------------------------------------------------------------------------
    def public(self, fn: Handler) -> Handler:
        """No sign-in needed; POSTs carry the pre-sign-in (or the session's) CSRF token."""

        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            viewer = await self.sessions.viewer(request)
            if request.method == "POST":
                anon, is_new = self.sessions.anon_token(request)
                ok = (not is_new and await csrf_ok(request, anon)) or (
                    viewer is not None and await csrf_ok(request, viewer.csrf))
                if not ok:
                    return self._csrf_failed(request, viewer)
            return secure(await fn(self, request, viewer))

        return endpoint

    def user(self, fn: Handler) -> Handler:
        return self._signed_in(fn, admin=False)

    def admin(self, fn: Handler) -> Handler:
        return self._signed_in(fn, admin=True)

    def _signed_in(self, fn: Handler, *, admin: bool) -> Handler:
        @functools.wraps(fn)
        async def endpoint(request: Request) -> Response:
            viewer = await self.sessions.viewer(request)
            if viewer is None:
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                nxt = "" if request.method != "GET" or target == "/" else "?next=" + quote(target, safe="")
                return self.redirect(request, "/login" + nxt)
            if admin and not viewer.is_admin:
                return self.error(request, 403, "Admins only",
                                  "This page is for administrators of this gateway.", viewer)
            if request.method == "POST" and not await csrf_ok(request, viewer.csrf):
                return self._csrf_failed(request, viewer)
            return secure(await fn(self, request, viewer))

        return endpoint

    def _csrf_failed(self, request: Request, viewer: Viewer | None) -> Response:
        return self.error(request, 403, "Form expired",
                          "This form was stale or did not come from this site. Go back, reload "
                          "the page and try again.", viewer)


def form_text(form: Any, name: str, limit: int = 500) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def form_int(form: Any, name: str, *, minimum: int | None = None) -> int | None:
    """An optional integer field: None when blank; ValueError when not a number."""
    text = form_text(form, name, 40).replace(",", "").replace("_", "")
    if not text:
        return None
    value = int(text)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}")
    return value


def page_number(request: Request) -> int:
    raw = request.query_params.get("page", "1")
    return max(int(raw), 1) if raw.isdigit() else 1


def parse_id(raw: str | None) -> int | None:
    """A database id from a URL: digits only, within 64-bit range; else None (→ 404)."""
    raw = raw or ""
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None


def path_int(request: Request, name: str) -> int | None:
    return parse_id(str(request.path_params.get(name, "")))


_URL_SAFE = "/?&=#%:@!$'()*+,;~-._"


def same_site_path(value: str | None) -> str:
    """A redirect target on this site, percent-encoded: '/' for anything else ('//host',
    '/\\host', schemes, control characters or whitespace that browsers strip into '//')."""
    if not value or not value.startswith("/") or "\\" in value:
        return "/"
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in value):
        return "/"
    if value.startswith("//"):
        return "/"
    return quote(value, safe=_URL_SAFE)
