"""Console sign-in state: server-side sessions behind signed cookies, CSRF, login throttling.

The cookie carries a random token signed with the server secret; the database keeps only the
token's SHA-256 (``console_sessions.id``) with the account and the session's CSRF token.
Every request re-reads the session joined with its account, so signing out, a password
change or a suspension — made by any process — holds on the next request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from sqlalchemy import delete, insert, select
from starlette.requests import Request
from starlette.responses import Response

from a2agent.config import Settings
from a2agent.store.db import Database
from a2agent.store.models import Account, ConsoleSession, utcnow

log = logging.getLogger("a2agent.console")

SESSION_COOKIE = "a2a_session"
ANON_COOKIE = "a2a_csrf"  # double-submit token for forms shown before sign-in
SESSION_DAYS = 14
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Viewer:
    """The signed-in account, as read on this request."""

    account_id: int
    email: str
    role: str
    balance_micro: int
    session_id: str
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def is_https(request: Request, settings: Settings) -> bool:
    return request.url.scheme == "https" or (settings.public_url or "").startswith("https://")


class Sessions:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._signer = URLSafeTimedSerializer(settings.secret_key, salt="a2agent-console-session")
        self._anon_signer = URLSafeTimedSerializer(settings.secret_key, salt="a2agent-console-csrf")

    # ---- cookies -------------------------------------------------------------------------
    def _set_cookie(self, request: Request, response: Response, name: str, value: str,
                    max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="lax",
                            secure=is_https(request, self.settings))

    def _token(self, request: Request) -> str | None:
        raw = request.cookies.get(SESSION_COOKIE)
        if not raw:
            return None
        try:
            token = self._signer.loads(raw, max_age=SESSION_DAYS * 86400)
        except BadSignature:
            return None
        return token if isinstance(token, str) else None

    # ---- sessions ------------------------------------------------------------------------
    async def viewer(self, request: Request) -> Viewer | None:
        token = self._token(request)
        if token is None:
            return None
        sid = _digest(token)
        q = (
            select(ConsoleSession.csrf_token, ConsoleSession.expires_at, Account.id, Account.email,
                   Account.role, Account.balance_micro, Account.suspended)
            .join(Account, Account.id == ConsoleSession.account_id)
            .where(ConsoleSession.id == sid)
        )
        async with self.db.read() as s:
            row = (await s.execute(q)).first()
        if row is None or row.expires_at <= utcnow() or row.suspended:
            return None
        return Viewer(account_id=row.id, email=row.email, role=row.role,
                      balance_micro=int(row.balance_micro), session_id=sid, csrf=row.csrf_token)

    async def start(self, request: Request, response: Response, account_id: int) -> None:
        """Create a session row and set its cookie (a fresh token: no session fixation)."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        async with self.db.write_conn() as conn:
            await conn.execute(insert(ConsoleSession).values(
                id=_digest(token), account_id=account_id, csrf_token=secrets.token_urlsafe(32),
                created_at=now, expires_at=now + dt.timedelta(days=SESSION_DAYS)))
            await conn.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
        self._set_cookie(request, response, SESSION_COOKIE, self._signer.dumps(token),
                         SESSION_DAYS * 86400)

    async def end(self, request: Request, response: Response) -> None:
        token = self._token(request)
        if token is not None:
            async with self.db.write_conn() as conn:
                await conn.execute(delete(ConsoleSession).where(ConsoleSession.id == _digest(token)))
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                               secure=is_https(request, self.settings))

    async def revoke_all(self, account_id: int, *, keep: str | None = None) -> None:
        """Sign an account out everywhere (optionally keeping the current session)."""
        q = delete(ConsoleSession).where(ConsoleSession.account_id == account_id)
        if keep is not None:
            q = q.where(ConsoleSession.id != keep)
        async with self.db.write_conn() as conn:
            await conn.execute(q)

    # ---- CSRF ----------------------------------------------------------------------------
    def anon_token(self, request: Request) -> tuple[str, bool]:
        """(token, is_new) of the pre-sign-in double-submit cookie."""
        raw = request.cookies.get(ANON_COOKIE)
        if raw:
            try:
                value = self._anon_signer.loads(raw, max_age=86400)
                if isinstance(value, str):
                    return value, False
            except BadSignature:
                pass
        return secrets.token_urlsafe(24), True

    def set_anon_cookie(self, request: Request, response: Response, token: str) -> None:
        self._set_cookie(request, response, ANON_COOKIE, self._anon_signer.dumps(token), 86400)


def same_origin(request: Request) -> bool:
    """Browsers send Origin on cross-site POSTs; when present it must be this host."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def csrf_ok(request: Request, expected: str) -> bool:
    if not same_origin(request):
        return False
    presented = request.headers.get(CSRF_HEADER)
    if not presented:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        presented = value if isinstance(value, str) else ""
    return bool(presented) and hmac.compare_digest(presented.encode(), expected.encode())


def client_ip(request: Request) -> str:
    return request.client.host if request.client else "unknown"


class Throttle:
    """Moving-window limits on failed sign-ins (per IP and per email) and other form abuse.

    Memory storage in one process; Redis when the gateway is configured with it, so every
    worker and instance shares the counts.
    """

    RULES = {
        "login-ip": "30/10minutes",
        "login-email": "8/10minutes",
        "signup-ip": "10/hour",
        "redeem": "10/minute",
        "key-usage": "30/minute",
        "password": "8/10minutes",
    }

    def __init__(self, settings: Settings) -> None:
        self._memory = MovingWindowRateLimiter(storage_from_string("async+memory://"))
        self._limiter = self._memory
        if settings.redis_url and settings.redis_url.startswith(("redis://", "rediss://")):
            # redis-py is the client the project ships (limits defaults to coredis)
            storage = storage_from_string("async+" + settings.redis_url, implementation="redispy",
                                          key_prefix="a2a-login")
            self._limiter = MovingWindowRateLimiter(storage)
        self._items = {name: parse(rule) for name, rule in self.RULES.items()}

    async def _call(self, method: str, rule: str, ident: str) -> Any:
        args = (self._items[rule], "console", rule, ident.lower())
        try:
            return await getattr(self._limiter, method)(*args)
        except Exception:  # noqa: BLE001 - shared storage down: keep counting in this process
            if self._limiter is self._memory:
                raise
            log.warning("console throttle: Redis unavailable, counting attempts in this process")
            return await getattr(self._memory, method)(*args)

    async def blocked(self, rule: str, ident: str) -> int:
        """Seconds until another attempt is allowed (0 = allowed now). Does not count."""
        if await self._call("test", rule, ident):
            return 0
        stats = await self._call("get_window_stats", rule, ident)
        return max(int(stats.reset_time - time.time()) + 1, 1)

    async def failure_delay(self, rule: str, ident: str) -> float:
        """Seconds to wait before answering a failure: none for the first three in the window,
        then doubling from 0.1 s up to 3 s."""
        try:
            stats = await self._call("get_window_stats", rule, ident)
        except Exception:  # noqa: BLE001 - a delay is a courtesy, never a failure
            return 0.0
        failures = self._items[rule].amount - stats.remaining
        return 0.0 if failures <= 3 else min(0.1 * 2 ** (failures - 4), 3.0)

    async def hit(self, rule: str, ident: str) -> None:
        await self._call("hit", rule, ident)

    async def clear(self, rule: str, ident: str) -> None:
        await self._call("clear", rule, ident)


def wait_message(seconds: int) -> str:
    minutes = (seconds + 59) // 60
    when = f"{minutes} minute{'s' if minutes != 1 else ''}" if seconds > 60 else f"{seconds} seconds"
    return f"Too many attempts. For your security, please wait {when} and try again."
