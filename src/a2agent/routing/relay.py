"""The data plane's core: pick a channel, call it (failing over before the first byte),
stream or return the answer in the caller's protocol, and settle the request exactly once.

Settlement runs in a tracked background task after the last byte was handed to the server,
so the client never waits on the database; graceful shutdown drains those tasks, and a
pending record written at admission covers a crash.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import orjson
from starlette.responses import Response, StreamingResponse

from a2agent.api.errors import ANTHROPIC, ApiError, error_response
from a2agent.auth.accounts import KeyPrincipal
from a2agent.billing.ledger import Outcome, PendingRequest
from a2agent.billing.reservation import (
    InsufficientBalance,
    Reservation,
    cap_field,
    insufficient,
    plan_reservation,
)
from a2agent.billing.settlement import SettlementQueue
from a2agent.providers.adapters import Adapter, MalformedUpstream
from a2agent.providers.sse import SSEDecoder, SSEEvent
from a2agent.providers.upstream import Timeouts, UpstreamError, UpstreamPool, UpstreamResponse
from a2agent.routing.catalog import ModelEntry, Route
from a2agent.routing.sanitize import sanitize
from a2agent.store.faults import DependencyUnavailable
from a2agent.translate.usage import Usage

log = logging.getLogger("a2agent.relay")

KEEPALIVE_SECONDS = 10.0  # ping a silent stream this often
# 401/403 from an upstream mean the channel's own credential is refused: the channel is broken,
# not the caller's request, so another channel may serve it (and the breaker counts it)
RETRYABLE_STATUS = frozenset({401, 403, 408, 409, 429, 500, 502, 503, 504, 529})


@dataclass
class RequestContext:
    request_id: str
    protocol: str  # the caller's
    principal: KeyPrincipal
    entry: ModelEntry
    body: dict[str, Any]
    raw: bytes
    client_ip: str | None
    caller_headers: dict[str, str]
    input_estimate: int
    started: float = field(default_factory=time.perf_counter)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    ttfb_ms: int | None = None
    route: Route | None = None  # the channel tried last (a failed request is recorded against it)
    endpoint: str = "chat"  # chat | messages | embeddings | responses
    # set by Relay.prepare, before admission: the routes from the first that can carry the
    # request, its adapter (body translated and encoded), and the balance hold it needs
    plan: tuple[list[Route], Adapter] | None = None
    reservation: Reservation | None = None
    headers: dict[str, str] = field(default_factory=dict)  # added to a successful answer

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)


def upstream_error_message(raw: bytes) -> str | None:
    """The human message inside an upstream error body of either protocol."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:500] or None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if isinstance(data.get("message"), str):
            return str(data["message"])
    return None


class Relay:
    def __init__(self, services: Any, pool: UpstreamPool, tasks: Any, adapter_for: Callable[..., Adapter],
                 selector: Any, health: Any, limiter: Any, token_counter: Any) -> None:
        self.services = services
        self.settings = services.settings
        self.pool = pool
        self.tasks = tasks
        self.adapter_for = adapter_for
        self.selector = selector
        self.health = health
        self.limiter = limiter
        self.token_counter = token_counter
        self.metrics: Any = None
        self.keepalive_seconds = KEEPALIVE_SECONDS
        self.settlements = SettlementQueue(services.ledger, tasks.spawn,
                                           max_size=self.settings.settlement_queue_max,
                                           on_settled=self._settled)

    # ---- entry point ----------------------------------------------------------------------
    def prepare(self, ctx: RequestContext) -> None:
        """Everything that can fail because of the caller's body — translation, re-encoding —
        runs here, before admission and before any channel slot is taken (400, never a
        channel failure), and sets the balance hold the request needs."""
        routes = self.selector.order(ctx.entry)
        if not routes:
            raise self._no_channel_error(ctx)
        routes, adapter = self._first_adapter(ctx, routes)
        ctx.plan = (routes, adapter)
        upstream_body = getattr(adapter, "translated", None)
        ctx.reservation = plan_reservation(
            ctx.entry.prices, ctx.input_estimate,
            upstream_body if isinstance(upstream_body, dict) else ctx.body,
            default_cap=self.settings.default_max_output_tokens,
            output=ctx.endpoint != "embeddings")

    async def run(self, ctx: RequestContext, release: Callable[[], None]) -> Response:
        """``release`` frees the admission slot; it is called after settlement."""
        pending = PendingRequest(
            ctx.request_id, ctx.principal.account_id, ctx.principal.key_id, ctx.entry.model_id, ctx.entry.prices
        )
        try:
            if ctx.plan is None:
                self.prepare(ctx)
            assert ctx.plan is not None and ctx.reservation is not None
            routes, adapter = ctx.plan
            route = routes[0]
            await self.services.ledger.open_request(
                pending, protocol=ctx.protocol, stream=ctx.stream, client_ip=ctx.client_ip,
                input_estimate=ctx.input_estimate, instance_id=self.services.instance_id,
                reserved=ctx.reservation.amount,
            )
        except InsufficientBalance as exc:
            release()
            assert ctx.reservation is not None
            raise insufficient(ctx.entry.prices, ctx.reservation, exc.available,
                               cap_field(ctx.body)) from None
        except BaseException as exc:
            release()
            # refused before any upstream call; a record that may exist anyway is closed at
            # no cost when the database answers again
            if isinstance(exc, DependencyUnavailable) and exc.maybe_written:
                self.settlements.void(pending)
            raise
        self.settlements.opened()
        try:
            resp, adapter, route = await self._connect(ctx, routes, adapter, route)
        except ApiError as err:
            status = "timeout" if err.code == "upstream_timeout" else "upstream_error"
            self._settle(ctx, pending, Outcome(status=status, http_status=err.status,
                                               error_type=err.code or "upstream_error", **_channel_of(ctx)),
                         release)
            return error_response(ctx.protocol, err, ctx.request_id)
        except BaseException:
            self._settle(ctx, pending, Outcome(status="error", error_type="gateway_error", **_channel_of(ctx)),
                         release)
            raise
        if adapter.stream:
            return StreamingResponse(
                self._stream(ctx, pending, adapter, route, resp, release),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-request-id": ctx.request_id, **adapter.headers(),
                         **ctx.headers},
            )
        return await self._complete(ctx, pending, adapter, route, resp, release)

    def _no_channel_error(self, ctx: RequestContext) -> ApiError:
        """Every route is out: rate limited by the upstream (429 + its Retry-After), circuit open
        (503 until the cool-down ends), or disabled."""
        model = ctx.entry.model_id
        wait, why = self.health.retry_in([r.channel for r in ctx.entry.routes])
        headers = {"retry-after": str(wait)} if wait else {}
        if why == "rate_limited":
            return ApiError(429, f"The upstream for {model} is rate limited; retry after {wait} s.",
                            code="upstream_rate_limited", headers=headers)
        if why == "circuit_open":
            return ApiError(503, f"The upstream for {model} is failing and was taken out of service; "
                                 f"retry after {wait} s.", code="upstream_unavailable", headers=headers,
                            err_type="overloaded_error" if ctx.protocol == ANTHROPIC else "api_error")
        return ApiError(503, f"No upstream channel is available for model {model}.",
                        code="no_channel", err_type="overloaded_error" if ctx.protocol == ANTHROPIC else "api_error")

    def _first_adapter(self, ctx: RequestContext, routes: list[Route]) -> tuple[list[Route], Adapter]:
        """The routes from the first one that can carry this request, and its adapter. A channel
        whose protocol cannot express the request (no translation for it) is passed over; when
        none can, the first refusal (400) goes to the caller."""
        refused: ApiError | None = None
        for i, candidate in enumerate(routes):
            try:
                return routes[i:], self._adapter(ctx, candidate)
            except ApiError as err:
                refused = refused or err
                _unsupported(ctx, candidate)
        assert refused is not None
        raise refused

    def _adapter(self, ctx: RequestContext, route: Route) -> Adapter:
        """The adapter for this route with the upstream body already encoded. A body the
        translation cannot handle is the caller's: 400, whatever the exception."""
        try:
            adapter = self.adapter_for(ctx, route)
            adapter.payload = adapter.request_body(ctx.raw)
        except ApiError:
            raise
        except Exception as exc:  # noqa: BLE001 - caller input of a shape the adapters do not expect
            log.warning("request body could not be prepared for a %s channel: %s", route.channel.protocol,
                        _describe(exc))
            raise ApiError(400, "The request could not be prepared for this model's upstream: a field has "
                                "an unexpected type or shape.", code="invalid_request") from None
        return adapter

    # ---- connecting, with failover before the first byte ------------------------------------
    async def _connect(self, ctx: RequestContext, routes: list[Route], adapter: Adapter,
                       route: Route) -> tuple[UpstreamResponse, Adapter, Route]:
        last: ApiError | None = None
        deadline = time.monotonic() + self.settings.upstream_total_timeout
        tried = 0
        for n, candidate in enumerate(routes):
            if tried >= max(self.settings.max_attempts, 1):
                break
            if n:
                try:
                    route, adapter = candidate, self._adapter(ctx, candidate)
                except ApiError:
                    # this channel cannot carry the request: not an attempt, and not the
                    # caller's error to report (the previous channel's failure is)
                    _unsupported(ctx, candidate)
                    continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ctx.route = route
            ch = route.channel
            t0 = time.perf_counter()
            slot = await self.health.acquire(ch, queue_timeout=min(60.0, left))
            if slot is None:
                ctx.attempts.append({"channel": ch.name, "outcome": "busy", "latency_ms": 0})
                last = ApiError(429 if ctx.protocol != ANTHROPIC else 529,
                                f"All channels for {ctx.entry.model_id} are busy; retry shortly.",
                                headers={"retry-after": "1"})
                continue  # nothing was called: not an attempt
            tried += 1
            timeouts = None
            if n:
                # a retry gets only what is left of the request's deadline (the first attempt
                # has its channel's own timeouts)
                own = Timeouts.for_channel(ch, self.settings)
                left = max(deadline - time.monotonic(), 0.001)
                timeouts = dataclasses.replace(own, total=min(own.total, left))
            try:
                resp = await self.pool.post(ch, adapter.path, adapter.payload,
                                            caller_headers=ctx.caller_headers, timeouts=timeouts)
            except UpstreamError as exc:
                self.health.release(ch, ok=False, latency=time.perf_counter() - t0)
                ctx.attempts.append({"channel": ch.name, "outcome": exc.kind,
                                     "latency_ms": int((time.perf_counter() - t0) * 1000)})
                last = ApiError(504 if exc.is_timeout else 502, f"{_sentence(exc.message)}.",
                                code="upstream_timeout" if exc.is_timeout else "upstream_unavailable")
                continue
            except BaseException:
                # anything unexpected (or a cancellation) must not keep the channel's slot: a
                # leaked slot lowers its concurrency for good, a leaked probe takes it out for good.
                # It is not the channel's failure either: only upstream outcomes feed the breaker
                self.health.release(ch, ok=False, latency=time.perf_counter() - t0, counted=False)
                raise
            latency = time.perf_counter() - t0
            if resp.status < 400:
                ctx.ttfb_ms = ctx.elapsed_ms()
                ctx.attempts.append({"channel": ch.name, "outcome": "ok", "latency_ms": int(latency * 1000)})
                resp.health_slot = (ch, t0)  # type: ignore[attr-defined]
                return resp, adapter, route
            try:
                err = await self._upstream_status_error(ctx, resp)
            except BaseException:
                self.health.release(ch, ok=False, latency=latency, counted=False)
                raise
            retryable = resp.status in RETRYABLE_STATUS
            # a 429 means the channel is alive but busy: Retry-After keeps it out, the breaker does not count it
            self.health.release(ch, ok=not retryable or resp.status == 429, latency=latency,
                                retry_after=resp.headers.get("retry-after") if resp.status == 429 else None)
            ctx.attempts.append({"channel": ch.name, "outcome": f"http_{resp.status}",
                                 "latency_ms": int(latency * 1000)})
            last = err
            if not retryable:
                break
        assert last is not None
        raise last

    async def _upstream_status_error(self, ctx: RequestContext, resp: UpstreamResponse) -> ApiError:
        try:
            raw = b"".join([c async for c in resp.chunks()])[:65536]
        except UpstreamError:
            raw = b""
        finally:
            resp.close()
        route = ctx.route
        message = sanitize(upstream_error_message(raw) or f"HTTP {resp.status}",
                           upstream_model=route.upstream_model if route else None, model=ctx.entry.model_id,
                           base_url=route.channel.base_url if route else None)
        headers = {}
        if resp.status == 429:
            if ra := resp.headers.get("retry-after"):
                headers["retry-after"] = ra
            return ApiError(429, f"Upstream rate limit: {message}", code="upstream_rate_limited", headers=headers)
        if resp.status >= 500:
            return ApiError(502, f"Upstream error (HTTP {resp.status}): {message}", code="upstream_error")
        if resp.status in (401, 403):
            # the channel's credential was refused: that is our problem, not the caller's key
            return ApiError(502, f"Upstream refused the gateway's credential (HTTP {resp.status}): {message}",
                            code="upstream_auth")
        return ApiError(resp.status, message, code="upstream_" + str(resp.status))

    # ---- non-stream -------------------------------------------------------------------------
    async def _complete(self, ctx: RequestContext, pending: PendingRequest, adapter: Adapter, route: Route,
                        resp: UpstreamResponse, release: Callable[[], None]) -> Response:
        ch = route.channel
        try:
            raw = await resp.read()
            data = orjson.loads(raw)
            if not isinstance(data, dict):
                raise MalformedUpstream("upstream answered with JSON that is not an object")
            try:
                body = adapter.response(data, raw)
            except MalformedUpstream:
                raise
            except Exception as exc:  # noqa: BLE001 - an answer of an unexpected shape
                log.warning("upstream answer of an unexpected shape: %s", _describe(exc))
                raise MalformedUpstream("upstream answer has an unexpected shape") from None
        except (UpstreamError, MalformedUpstream, orjson.JSONDecodeError) as exc:
            resp.close()
            self._release_channel(resp, ok=False)
            timeout = isinstance(exc, UpstreamError) and exc.is_timeout
            msg = exc.message if isinstance(exc, UpstreamError) else str(exc) or "malformed upstream response"
            err = ApiError(504 if timeout else 502, f"{_sentence(msg)}.",
                           code="upstream_timeout" if timeout else "bad_upstream_response")
            self._settle(ctx, pending, Outcome(status="timeout" if timeout else "upstream_error",
                                               http_status=err.status, error_type=err.code,
                                               channel=ch.name, upstream_protocol=ch.protocol), release)
            return error_response(ctx.protocol, err, ctx.request_id)
        except BaseException:
            resp.close()
            self._release_channel(resp, ok=False, counted=False)  # ours (or a cancellation)
            self._settle(ctx, pending, Outcome(status="error", error_type="gateway_error", channel=ch.name,
                                               upstream_protocol=ch.protocol), release)
            raise
        resp.release()
        self._release_channel(resp, ok=True)
        usage, source = self._usage(ctx, adapter, route, completed=True)
        self._settle(ctx, pending, self._outcome(ctx, route, "ok", 200, usage, source), release)
        return Response(body, media_type="application/json",
                        headers={"x-request-id": ctx.request_id, **adapter.headers(), **ctx.headers})

    # ---- stream -----------------------------------------------------------------------------
    async def _stream(self, ctx: RequestContext, pending: PendingRequest, adapter: Adapter, route: Route,
                      resp: UpstreamResponse, release: Callable[[], None]) -> AsyncIterator[bytes]:
        decoder = SSEDecoder()
        status, error_type = "ok", None
        handed_off = False
        checkpoint = time.monotonic() + self.settings.stream_checkpoint_seconds
        try:
            try:
                async for chunk in resp.chunks(heartbeat=self.keepalive_seconds):
                    if not chunk:
                        yield adapter.keepalive()
                        continue
                    out, bad = _convert(adapter, decoder.feed(chunk))
                    if out:
                        yield out
                    if bad is not None:
                        raise bad
                    if time.monotonic() >= checkpoint:
                        checkpoint = time.monotonic() + self.settings.stream_checkpoint_seconds
                        self._checkpoint(ctx, adapter)
                out, bad = _convert(adapter, decoder.flush(), tail=True)
                if out:
                    yield out
                if bad is not None:
                    raise bad
                if adapter.upstream_error is not None:
                    # the error event already went to the client in its protocol
                    status, error_type = "upstream_error", adapter.upstream_error[0]
                elif not adapter.completed:
                    raise MalformedUpstream("upstream stream ended before it was complete")
                else:
                    tail = adapter.finish()
                    if tail:
                        yield tail
            except (UpstreamError, MalformedUpstream) as exc:
                timeout = isinstance(exc, UpstreamError) and exc.is_timeout
                status = "timeout" if timeout else "upstream_error"
                error_type = exc.kind if isinstance(exc, UpstreamError) else "malformed_stream"
                message = exc.message if isinstance(exc, UpstreamError) else str(exc)
                err_type = ("timeout_error" if timeout else "api_error") if ctx.protocol == ANTHROPIC else (
                    "timeout" if timeout else "upstream_error")
                yield adapter.error_bytes(err_type, f"{_sentence(message)}; the response is incomplete.")
        except (asyncio.CancelledError, GeneratorExit):
            if adapter.completed:
                # the terminal event was relayed; the client closing before the upstream's
                # body ended is a complete stream, settled below as such
                raise
            # the client went away mid-stream: read on for the upstream's final usage
            handed_off = True
            self.tasks.spawn(self._drain(ctx, pending, adapter, route, resp, decoder, release),
                             name=f"drain-{ctx.request_id}")
            raise
        finally:
            if not handed_off:
                ok = status == "ok"
                resp.close() if not ok else resp.release()
                self._release_channel(resp, ok=ok or status == "upstream_error" and error_type not in (
                    "reset", "malformed_stream"))
                usage: Usage | None = None
                source = "none"
                if ok:
                    usage, source = self._usage(ctx, adapter, route, completed=True)
                elif adapter.output_chars > 0:
                    # output reached the client before the upstream failed: it is charged,
                    # counted from what was relayed (and the input the upstream read)
                    usage, source = self._usage(ctx, adapter, route, completed=False, relayed=True)
                    source = "relayed_" + source
                self._settle(ctx, pending, self._outcome(ctx, route, status, 200, usage, source, error_type),
                             release)

    async def _drain(self, ctx: RequestContext, pending: PendingRequest, adapter: Adapter, route: Route,
                     resp: UpstreamResponse, decoder: SSEDecoder, release: Callable[[], None]) -> None:
        try:
            async with asyncio.timeout(self.settings.disconnect_drain_seconds):
                async for chunk in resp.chunks():
                    for ev in decoder.feed(chunk):
                        _on_event(adapter, ev)
                    if adapter.completed:
                        break
        except (TimeoutError, UpstreamError, MalformedUpstream):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            resp.close()
            self._release_channel(resp, ok=True)
        usage, source = self._usage(ctx, adapter, route, completed=adapter.completed)
        source += "_after_disconnect"
        self._settle(ctx, pending, self._outcome(ctx, route, "client_disconnect", 499, usage, source,
                                                 "client_disconnect"), release)

    def _checkpoint(self, ctx: RequestContext, adapter: Adapter) -> None:
        """Note on the pending record the output relayed so far (≈4 characters a token), so a
        crash mid-stream still charges what reached the client (recovery reads it)."""
        if adapter.output_chars:
            self.tasks.spawn(self._note_progress(ctx.request_id, -(-adapter.output_chars // 4)),
                             name=f"progress-{ctx.request_id}")

    async def _note_progress(self, request_id: str, output_tokens: int) -> None:
        try:
            await self.services.ledger.note_progress(request_id, output_tokens)
        except Exception:  # noqa: BLE001 - a missed checkpoint only weakens crash recovery
            log.warning("could not note the progress of %s", request_id)

    # ---- usage and settlement ---------------------------------------------------------------
    def _usage(self, ctx: RequestContext, adapter: Adapter, route: Route, *, completed: bool,
               relayed: bool = False) -> tuple[Usage, str]:
        """The upstream's own usage when it reported one; else count what we relayed. Never
        raises: a failure of our counting must not keep a request from being settled.

        ``relayed``: a stream that broke is charged for the output that reached the client."""
        try:
            return self._measured(ctx, adapter, route, completed=completed, relayed=relayed)
        except Exception as exc:  # noqa: BLE001 - settle on the estimate instead
            log.warning("usage of %s could not be counted: %s", ctx.request_id, _describe(exc))
            return Usage(ctx.input_estimate, -(-adapter.output_chars // 4)), "estimate"

    def _measured(self, ctx: RequestContext, adapter: Adapter, route: Route, *,
                  completed: bool, relayed: bool = False) -> tuple[Usage, str]:
        reported = adapter.usage
        if reported is not None and completed and (reported.output_tokens or reported.input_tokens):
            return reported, "upstream"
        counted_in, counted_out, source = self.token_counter.count(
            route.channel.name, ctx.body, "".join(adapter.text_parts), adapter.output_chars, ctx.input_estimate)
        if reported is not None and (reported.input_tokens or reported.cache_read_tokens):
            # input known from the upstream (e.g. Anthropic's message_start), output counted;
            # the upstream's output count includes what an adapter held back from the client
            out = counted_out if relayed and adapter.withholds_output else max(reported.output_tokens,
                                                                                counted_out)
            return Usage(reported.input_tokens, out,
                         reported.cache_read_tokens, reported.cache_write_tokens), "partial_" + source
        return Usage(counted_in, counted_out), source

    def _outcome(self, ctx: RequestContext, route: Route, status: str, http_status: int, usage: Usage | None,
                 source: str, error_type: str | None = None) -> Outcome:
        charged = usage is not None and (status in ("ok", "client_disconnect") or source.startswith("relayed"))
        u = usage if charged and usage is not None else Usage(0, 0)
        return Outcome(
            status=status,
            input_tokens=u.input_tokens,
            output_tokens=u.output_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            usage_source=source if charged else "none",
            http_status=http_status,
            error_type=error_type,
            channel=route.channel.name,
            upstream_protocol=route.channel.protocol,
            latency_ms=ctx.elapsed_ms(),
            ttfb_ms=ctx.ttfb_ms,
            attempts=ctx.attempts,
        )

    def _release_channel(self, resp: UpstreamResponse, *, ok: bool, counted: bool = True) -> None:
        slot = getattr(resp, "health_slot", None)
        if slot is not None:
            resp.health_slot = None  # type: ignore[attr-defined]
            ch, t0 = slot
            self.health.release(ch, ok=ok, latency=time.perf_counter() - t0, counted=counted)

    def _settle(self, ctx: RequestContext, pending: PendingRequest, outcome: Outcome,
                release: Callable[[], None]) -> None:
        if outcome.latency_ms is None:
            outcome.latency_ms = ctx.elapsed_ms()
        if not outcome.attempts:
            outcome.attempts = ctx.attempts
        self.tasks.spawn(self._settle_task(ctx.principal, pending, outcome, release),
                         name=f"settle-{ctx.request_id}")

    async def _settle_task(self, principal: KeyPrincipal, pending: PendingRequest, outcome: Outcome,
                           release: Callable[[], None]) -> None:
        try:
            tokens = (outcome.input_tokens + outcome.output_tokens + outcome.cache_read_tokens
                      + outcome.cache_write_tokens)
            try:
                await self.limiter.record_tokens(principal, tokens)
            except Exception:  # noqa: BLE001 - a limiter outage must not lose the charge
                log.warning("could not record token usage for rate limits")
            # while the database is away the settlement waits in the retry queue: the
            # admission slot is released now all the same
            await self.settlements.settle(pending, outcome)
        finally:
            release()

    def _settled(self, pending: PendingRequest, outcome: Outcome, cost: int | None) -> None:
        if self.metrics is not None:
            self.metrics.settled(pending.model, outcome.status, outcome, cost)


def _unsupported(ctx: RequestContext, route: Route) -> None:
    ctx.attempts.append({"channel": route.channel.name, "outcome": "unsupported", "latency_ms": 0})


def _channel_of(ctx: RequestContext) -> dict[str, Any]:
    route = ctx.route
    return {} if route is None else {"channel": route.channel.name, "upstream_protocol": route.channel.protocol}


def _sentence(message: str) -> str:
    """An upstream failure as the start of a sentence for the caller. The messages already
    name the upstream ("upstream sent nothing for 5s"); others get an "Upstream error:" lead."""
    message = message.strip().rstrip(".")
    if "upstream" in message.lower():
        return message[:1].upper() + message[1:]
    return f"Upstream error: {message}"


def _convert(adapter: Adapter, events: list[SSEEvent], *,
             tail: bool = False) -> tuple[bytes, MalformedUpstream | None]:
    """The bytes to send for one read's events. A malformed event stops the batch, but the
    good events before it (which may share a network read with it) still go out first.

    ``tail``: the unterminated event left when the body ended. It is relayed only when its
    data is whole (JSON or ``[DONE]``): a body cut off mid-event is a broken stream, and SSE
    itself discards an event without its blank line (passthrough adapters do not parse every
    event, so the check is made here)."""
    out: list[bytes] = []
    for ev in events:
        try:
            if tail and ev.data and ev.data != b"[DONE]":
                try:
                    orjson.loads(ev.data)
                except orjson.JSONDecodeError:
                    raise MalformedUpstream("upstream stream ended in the middle of an event") from None
            out.append(_on_event(adapter, ev))
        except MalformedUpstream as exc:
            return b"".join(out), exc
    return b"".join(out), None


def _on_event(adapter: Adapter, ev: SSEEvent) -> bytes:
    """``adapter.on_event``, with an event of an unexpected shape (well-formed JSON that is
    not what the protocol documents: a string where an object belongs, …) reported as a
    malformed upstream instead of escaping the relay (which dropped the client connection
    mid-body and settled the request as ok)."""
    try:
        return adapter.on_event(ev)
    except MalformedUpstream:
        raise
    except Exception as exc:  # noqa: BLE001 - adapters read the documented shapes only
        log.warning("upstream stream event of an unexpected shape: %s", _describe(exc))
        raise MalformedUpstream("upstream sent a stream event of an unexpected shape") from None


def _describe(exc: BaseException) -> str:
    # the type only: an exception's text may quote upstream content, which is never logged
    return type(exc).__name__

