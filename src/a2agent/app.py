"""Builds the ASGI app: the data plane (api/), the console, health and metrics; wires services."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import datetime as dt
import json
import logging
import os
import socket
from typing import Any, AsyncIterator

from sqlalchemy import delete, select
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from a2agent.api import routes as api_routes
from a2agent.api.errors import ANTHROPIC, OPENAI, ApiError, error_response, unavailable_error
from a2agent.billing.admission import Admission
from a2agent.billing.usage import UsageQueries
from a2agent.config import Settings
from a2agent.observability.metrics import Metrics
from a2agent.providers.adapters_factory import make_adapter
from a2agent.providers.tokens import TokenCounters, TokenCounts
from a2agent.providers.upstream import UpstreamPool
from a2agent.routing.health import ChannelHealth, Selector
from a2agent.routing.relay import Relay
from a2agent.routing.tasks import TaskTracker
from a2agent.services import REDIS_TIMEOUT, Services
from a2agent.store.faults import DATABASE, DependencyUnavailable, classify
from a2agent.store.models import Instance, utcnow

log = logging.getLogger("a2agent")

HEARTBEAT_SECONDS = 5.0
DEAD_AFTER_SECONDS = 30.0


class Gateway:
    """Everything one process serves with. Owned by the app; tests build their own."""

    def __init__(self, settings: Settings, services: Services | None = None) -> None:
        self.settings = settings
        self.services = services or Services(settings)
        self.tasks = TaskTracker()
        self.pool = UpstreamPool(settings)
        self.health = ChannelHealth()
        self.selector = Selector(self.health)
        self.admission = Admission(settings, redis=self.services.redis, deps=self.services.deps,
                                   redis_timeout=REDIS_TIMEOUT, hot=self.services.hot)
        self.usage = UsageQueries(self.services.db)
        self.metrics = Metrics()
        self.token_counts = TokenCounts(self)
        self.counters = TokenCounters()
        self.relay = Relay(self.services, self.pool, self.tasks, make_adapter, self.selector, self.health,
                           self.admission, self.counters)
        self.relay.metrics = self.metrics
        self.services.deps.on_error = self.metrics.dependency_error
        self.draining = False
        self._recover_after = 0.0  # monotonic: no dead-instance recovery before this
        self._heartbeat: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if await self.services.catalog.seal_credentials():  # rows stored before sealing existed
            log.info("channel credentials sealed at rest")
        snapshot = await self.services.catalog.snapshot(await self.services.catalog.current_version())
        if "local" in snapshot.channels:
            from a2agent.providers.local_model import register_local_counter

            # the local model omits usage in streams: count with its own tokenizer
            await asyncio.to_thread(register_local_counter, self)
        await self._beat()
        recovered = await self.recover()
        if recovered:
            log.info("settled %d request(s) left pending by a stopped process", recovered)
        self._heartbeat = asyncio.create_task(self._heartbeat_loop())

    async def recover(self) -> int:
        """Settle pending records of processes that are gone (dead heartbeat, or a process
        of this host that no longer exists)."""
        host = socket.gethostname()
        cutoff = utcnow() - dt.timedelta(seconds=DEAD_AFTER_SECONDS)
        async with self.services.db.read() as s:
            instances = (await s.execute(select(Instance.id, Instance.heartbeat_at))).all()
        dead = []
        for iid, beat in instances:
            if iid == self.services.instance_id:
                continue
            h, _, pid = iid.rpartition(":")
            same_host = h.split(":")[0] == host
            gone = same_host and pid.isdigit() and not _pid_alive(int(pid))
            if gone or beat < cutoff:
                dead.append(iid)
        # records without an instance row at all are from processes older than the lease
        stale = utcnow() - dt.timedelta(seconds=self.settings.upstream_total_timeout
                                        + self.settings.disconnect_drain_seconds + DEAD_AFTER_SECONDS)
        n = await self.services.ledger.recover_pending(dead, older_than=stale)
        if dead:
            async with self.services.db.write() as s:
                await s.execute(delete(Instance).where(Instance.id.in_(dead)))
        return n

    def channel_states(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for ch in self.services.catalog._snapshot.channels.values():
            st = self.health.state(ch)
            out[ch.name] = {"state": self.health.describe(ch), "in_flight": st.in_flight,
                            "consecutive_failures": st.consecutive_failures}
        return out

    async def _beat(self) -> None:
        states = json.dumps(self.channel_states())
        async with self.services.db.write() as s:
            row = await s.get(Instance, self.services.instance_id)
            if row is None:
                s.add(Instance(id=self.services.instance_id, heartbeat_at=utcnow(), channel_states=states))
            else:
                row.heartbeat_at = utcnow()
                row.channel_states = states

    async def _heartbeat_loop(self) -> None:
        n = 0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await self._beat()
                self.services.deps.ok(DATABASE)
                n += 1
                if n % 6 == 0 and loop.time() >= self._recover_after:
                    await self.recover()
            except Exception as exc:  # noqa: BLE001 - keep beating; the DB may come back
                err = classify(exc, DATABASE)
                if err is None:
                    log.warning("heartbeat failed", exc_info=True)
                    continue
                self.services.deps.failed(err)
                # every instance's heartbeat went stale meanwhile: give the others time to
                # beat again before any of them is taken for dead and its requests recovered
                self._recover_after = loop.time() + DEAD_AFTER_SECONDS + 2 * HEARTBEAT_SECONDS

    async def stop(self) -> None:
        """Graceful: wait for in-flight requests' settlements, then close everything."""
        self.draining = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self.admission.guard is not None:
            await self.admission.guard.close()
        finished = await self.tasks.drain(self.settings.shutdown_grace_seconds)
        if not finished:
            log.warning("shutdown grace period over with %d task(s) left; they will be recovered",
                        len(self.tasks))
            await self.tasks.cancel_all()
        await self.pool.close()
        if finished:  # else keep the row: its pending records are recovered as a dead instance's
            with contextlib.suppress(Exception):
                async with self.services.db.write() as s:
                    await s.execute(delete(Instance).where(Instance.id == self.services.instance_id))
        await self.services.close()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready while the database answers (within a second). Redis is reported but does not
    make the gateway unready: without it, limits are counted per instance (degraded)."""
    gw: Gateway = request.app.state.gateway
    if gw.draining:
        return JSONResponse({"status": "draining"}, status_code=503)
    deps = gw.services.deps
    body: dict[str, str] = {}
    guard = gw.admission.guard
    if guard is not None:
        db_ok, redis_ok = await asyncio.gather(gw.services.db.ping(), guard.ping())
        body["redis"] = "ok" if redis_ok else "degraded"
    else:
        db_ok = await gw.services.db.ping()
    if not db_ok:
        deps.failed(DependencyUnavailable(DATABASE, "readiness check"))
        return JSONResponse({"status": "database unreachable", "database": "unreachable", **body},
                            status_code=503, headers={"retry-after": "2"})
    # (a write that works, not this read, says the database is back: see store.hotpath)
    return JSONResponse({"status": "ready", "database": "ok", **body})


async def metrics(request: Request) -> Response:
    """Behind ``A2AGENT_METRICS_TOKEN`` (bearer) when set; else only for loopback peers (the
    sample nginx config does not pass /metrics on)."""
    gw: Gateway = request.app.state.gateway
    token = gw.settings.metrics_token
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return Response(b"metrics require the bearer token (A2AGENT_METRICS_TOKEN)\n", status_code=401,
                            media_type="text/plain", headers={"www-authenticate": "Bearer"})
    elif (request.client.host if request.client else "") not in ("127.0.0.1", "::1"):
        return Response(b"metrics are served to loopback only; set A2AGENT_METRICS_TOKEN\n", status_code=403,
                        media_type="text/plain")
    await gw.metrics.count_pending(gw.services.db)
    return gw.metrics.render(gw)


class SecurityHeadersMiddleware:
    """HSTS on every response when the public URL is https."""

    def __init__(self, app: ASGIApp, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.hsts:
            await self.app(scope, receive, send)
            return

        async def with_hsts(message: Any) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"strict-transport-security", HSTS)]
            await send(message)

        await self.app(scope, receive, with_hsts)


HSTS = b"max-age=31536000; includeSubDomains"


class ApiErrorMiddleware:
    """Unknown /v1 paths and unexpected failures answer in the caller's protocol."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if scope["method"] == "HEAD" and path == "/":
            await Response(b"", 200)(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:
                raise
            gw: Gateway = scope["app"].state.gateway
            unavailable = unavailable_error(exc, gw.services.deps)
            if unavailable is not None:  # logged once per outage, not per request
                await _unavailable_response(path, unavailable)(scope, receive, send)
                return
            if not path.startswith("/v1"):
                raise
            log.exception("unhandled error on %s", path)
            proto = ANTHROPIC if path.startswith("/v1/messages") else OPENAI
            await error_response(proto, ApiError(500, "Internal gateway error; the request was not "
                                                      "charged."))(scope, receive, send)


def _unavailable_response(path: str, err: ApiError) -> Response:
    if path.startswith("/v1"):
        return error_response(ANTHROPIC if path.startswith("/v1/messages") else OPENAI, err)
    return Response("Service temporarily unavailable; retry in a few seconds.\n", 503,
                    headers=err.headers, media_type="text/plain")


async def not_found(request: Request, exc: Exception) -> Response:
    path = request.url.path
    if path.startswith("/v1"):
        proto = ANTHROPIC if path.startswith("/v1/messages") else OPENAI
        status = getattr(exc, "status_code", 404)
        if status == 405:
            return error_response(proto, ApiError(405, f"Method {request.method} is not allowed on {path}."))
        return error_response(proto, ApiError(404, f"Unknown endpoint {path}."))
    from a2agent.console.web import html_error

    return await html_error(request, exc)


def create_app(settings: Settings, gateway: Gateway | None = None, *, console: bool = True) -> Starlette:
    gw = gateway or Gateway(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    routes: list[Any] = [
        Route("/healthz", healthz, methods=["GET", "HEAD"]),
        Route("/readyz", readyz, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
        *api_routes.routes,
    ]
    if settings.payments_enabled:
        from a2agent.api.stripe_webhook import stripe_webhook

        routes.append(Route("/webhooks/stripe", stripe_webhook, methods=["POST"]))
    if console:
        from a2agent.console.web import console_routes

        routes.extend(console_routes(gw))
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(SecurityHeadersMiddleware, hsts=settings.base_url.startswith("https://")),
                    Middleware(ApiErrorMiddleware)],
        exception_handlers={404: not_found, 405: not_found},
    )
    app.state.gateway = gw
    return app


def create_app_from_env() -> Starlette:
    """Factory for uvicorn workers: settings come from the environment set by `serve`."""
    from a2agent.config import load_settings
    from a2agent.observability.logs import configure_logging

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
