"""The request log's edge: refusals of known keys written as records, and one structured
access-log line per API request.

A refused request (403, 404, 413, 429, 400, and 401 for an expired key or a deleted key of a
known account) leaves a settled, uncharged record with status ``refused``, so the owner can see
it in the console's request log. Never a payload, a key or a header value other than the user
agent (cut to 200 characters) is kept.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from a2agent.api.errors import ApiError

log = logging.getLogger("a2agent.access")


@dataclass
class AccessNote:
    """What the edge learnt about one API request, for its access-log line."""

    request_id: str | None = None
    key_id: int | None = None
    account_id: int | None = None
    model: str | None = None
    ctx: Any = None  # routing.relay.RequestContext once admitted: channel and attempts
    extra: dict[str, Any] = field(default_factory=dict)

    def channel(self) -> str | None:
        route = getattr(self.ctx, "route", None)
        return route.channel.name if route is not None else None


def note_of(request: Request) -> AccessNote:
    note = getattr(request.state, "a2a_access", None)
    if note is None:
        note = AccessNote()
        request.state.a2a_access = note
    return note


def user_agent(request: Request) -> str | None:
    value = request.headers.get("user-agent")
    return value[:200] if value else None


async def record_refusal(request: Request, err: ApiError, *, request_id: str, protocol: str,
                         key_id: int, account_id: int, model: str | None, stream: bool,
                         started: float) -> None:
    """Write the refused request's record (metadata only); a failure is logged, not raised."""
    gw = request.app.state.gateway
    try:
        await gw.services.hot.record_refusal({
            "id": request_id, "account_id": account_id, "key_id": key_id,
            "model": (model or "")[:200], "protocol": protocol, "stream": stream,
            "http_status": err.status, "error_type": (err.code or "refused")[:64],
            "client_ip": request.client.host if request.client else None,
            "user_agent": user_agent(request), "created_at": dt.datetime.now(dt.UTC),
            "instance_id": gw.services.instance_id,
            "latency_ms": int((time.perf_counter() - started) * 1000),
        })
    except Exception:  # noqa: BLE001 - the refusal is answered whatever happens to its record
        log.warning("could not record a refused request", extra={"request_id": request_id})


class AccessLogMiddleware:
    """One JSON line per ``/v1`` request when it ends (streams: after the last byte): request
    id, method, path, status, latency, model, channel, key id. Never keys or payloads."""

    def __init__(self, app: ASGIApp, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.enabled or scope["type"] != "http" or not scope["path"].startswith("/v1"):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        request_id: str | None = None

        async def watching_send(message: Message) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"x-request-id":
                        request_id = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            note: AccessNote | None = scope.get("state", {}).get("a2a_access")
            log.info("%s %s %d", scope["method"], scope["path"], status, extra={
                "request_id": request_id or (note.request_id if note else None),
                "method": scope["method"], "path": scope["path"], "status": status,
                "latency_ms": int((time.perf_counter() - started) * 1000),
                "model": note.model if note else None,
                "channel": note.channel() if note else None,
                "key_id": note.key_id if note else None,
                "account_id": note.account_id if note else None,
            })
