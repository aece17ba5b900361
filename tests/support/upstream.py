"""A protocol-faithful, scriptable fake LLM provider (OpenAI + Anthropic) for tests.

In-process use::

    with ScriptedUpstream() as up:
        up.enqueue(Script(text="Hi", tool_calls=[ToolCall("f", {"a": 1})]))
        up.enqueue(Script(status=429, retry_after=3), model="m1")
        ...  # point the gateway's channel at up.openai_base / up.anthropic_base
        assert up.requests[0].json["model"] == "m1"

Standalone process (benchmarks, multi-process tests)::

    python -m tests.support.upstream --port 9100 [--text "..."] [--no-record]

then drive it with ``tests.support.remote.RemoteUpstream`` or the control API:
``POST /_control/enqueue`` (``{"script": {...}, "model": "m1"}`` or a bare
script dict), ``POST /_control/clear``, ``GET /_control/requests``,
``GET /_control/stats``, ``POST /_control/default`` (set the default script),
``POST /_control/drop_idle`` (close idle keep-alive connections).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import threading
import time
from collections import deque
from typing import Any, Callable, Optional

import orjson

from . import wire_anthropic as wa
from . import wire_openai as wo
from .http11 import Connection, HTTPRequest, HTTPServer, build_head
from .recording import RecordedRequest, route
from .responses import (
    JSON_CT,
    embeddings,
    raw_bytes,
    render_malformed,
    render_nonstream,
    render_stream,
    send_body,
    send_error,
    send_stream,
)
from .script import CHAT, COUNT_TOKENS, DEFAULT_TEXT, EMBEDDINGS, MESSAGES, MODELS, Script, estimate_input_tokens, resolve_usage

__all__ = ["RecordedRequest", "ScriptedUpstream", "main"]

DEFAULT_MODELS = ["gpt-4o-mini", "claude-sonnet-4-5"]
_PLACEHOLDER = "Zq9PLACEHOLDERq9Zq9Zq9Zq"  # 24 chars, same width as the id hex


class ScriptedUpstream:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        default_text: str = DEFAULT_TEXT,
        models: Optional[list[str]] = None,
        require_api_key: Optional[str] = None,
        keepalive_timeout: Optional[float] = None,
        record: bool = True,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.port: Optional[int] = None
        self.default_text = default_text
        self.models = list(models or DEFAULT_MODELS)
        self.require_api_key = require_api_key
        self.keepalive_timeout = keepalive_timeout
        self.record = record
        self.client_disconnects = 0
        self._default = Script()
        self._default_plain = True  # default script is Script(): the fast path applies
        self._lock = threading.Lock()
        self._queue: deque[list] = deque()  # entries: [script, remaining_uses]
        self._by_model: dict[str, deque[list]] = {}
        self._requests: list[RecordedRequest] = []
        self._server = HTTPServer(self._handle, keepalive_timeout)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._id_prefix = os.urandom(4).hex()
        self._seq = 0
        self._fast_cache: dict[tuple, tuple[bytes, bytes, bytes]] = {}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "ScriptedUpstream":
        if self._thread is not None:
            return self
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self.port = loop.run_until_complete(self._server.start(self.host, self._requested_port))
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                errors.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._server.stop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="scripted-upstream", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            self._thread = None
            raise errors[0]
        return self

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> "ScriptedUpstream":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("ScriptedUpstream not started")
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base(self) -> str:
        return self.url

    # ------------------------------------------------------------------ scripting
    def enqueue(self, script: Optional[Script] = None, *, model: Optional[str] = None, **fields: Any) -> Script:
        """Queue a script (or build one from keyword fields).  With ``model`` it goes
        to that model's queue, which is consulted before the shared FIFO queue."""
        if script is None:
            script = Script(**fields)
        elif fields:
            raise TypeError("pass either a Script or keyword fields, not both")
        entry = [script, max(1, script.repeat)]
        with self._lock:
            if model is None:
                self._queue.append(entry)
            else:
                self._by_model.setdefault(model, deque()).append(entry)
        return script

    def set_default(self, script: Optional[Script] = None, **fields: Any) -> None:
        """Change what un-scripted requests get (e.g. ``set_default(chunk_delay=0.01)``)."""
        self._default = script if script is not None else Script(**fields)
        self._default_plain = self._default == Script()

    @property
    def pending_scripts(self) -> int:
        with self._lock:
            return len(self._queue) + sum(len(q) for q in self._by_model.values())

    def _take_script(self, endpoint: str, model: Optional[str], rec: RecordedRequest) -> Optional[Script]:
        with self._lock:
            queues = [self._by_model.get(model)] if model is not None else []
            queues.append(self._queue)
            for queue in queues:
                if not queue:
                    continue
                for entry in queue:
                    script = entry[0]
                    if script.accepts(endpoint, model, rec):
                        entry[1] -= 1
                        if entry[1] <= 0:
                            queue.remove(entry)
                        return script
        return None

    # ------------------------------------------------------------------ inspection
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> Optional[RecordedRequest]:
        with self._lock:
            return self._requests[-1] if self._requests else None

    @property
    def open_connections(self) -> int:
        return self._server.stats.open

    @property
    def total_connections(self) -> int:
        return self._server.stats.total

    @property
    def errors(self) -> list[BaseException]:
        """Exceptions raised while handling requests (e.g. by a Script.match callable)."""
        return list(self._server.stats.errors)

    def clear(self) -> None:
        """Forget recorded requests and queued scripts; reset client_disconnects and
        total_connections (the latter then counts connections accepted since)."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()
            self._by_model.clear()
            self.client_disconnects = 0
            self._server.stats.total = 0
            self._server.stats.errors.clear()

    def stats(self) -> dict:
        return {
            "open_connections": self.open_connections,
            "total_connections": self.total_connections,
            "client_disconnects": self.client_disconnects,
            "requests": len(self._requests),
            "pending_scripts": self.pending_scripts,
        }

    def wait_until(self, predicate: Callable[["ScriptedUpstream"], bool], timeout: float = 5.0) -> bool:
        """Poll (blocking) until predicate(self) is true.  Returns False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    async def await_until(self, predicate: Callable[["ScriptedUpstream"], bool], timeout: float = 5.0) -> bool:
        """Like wait_until, for async tests (does not block the test's event loop)."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        if not self.wait_until(lambda u: len(u._requests) >= n, timeout):
            raise TimeoutError(f"expected {n} requests, got {len(self._requests)}")
        return self.requests

    def drop_idle_connections(self) -> int:
        """Close (FIN) every idle keep-alive connection, like a server's idle timeout.
        Lets tests check that the gateway copes with stale pooled connections."""
        if self._loop is None:
            return 0
        fut = asyncio.run_coroutine_threadsafe(self._adrop_idle(), self._loop)
        return fut.result(5)

    async def _adrop_idle(self) -> int:
        return self._server.drop_idle()

    # ------------------------------------------------------------------ serving
    def _next_hex(self) -> str:
        """24 hex chars, unique per response (the fast path relies on the width)."""
        self._seq += 1
        return f"{self._id_prefix}{self._seq:016x}"

    async def _handle(self, conn: Connection, req: HTTPRequest) -> None:
        if req.path.startswith("/_control/"):
            await self._control(conn, req)
            return
        endpoint = route(req.method, req.path)
        parsed: Any = None
        if req.body:
            try:
                parsed = orjson.loads(req.body)
            except orjson.JSONDecodeError:
                parsed = None
        model = parsed.get("model") if isinstance(parsed, dict) else None
        model = model if isinstance(model, str) else None
        stream = bool(parsed.get("stream")) if isinstance(parsed, dict) else False
        rec = RecordedRequest(
            req.method, req.path, req.query, req.headers, req.body, parsed, time.time(), endpoint, model, stream
        )
        if self.record:
            with self._lock:
                self._requests.append(rec)
        anthropic = endpoint in (MESSAGES, COUNT_TOKENS) or (
            endpoint in (MODELS, None) and ("anthropic-version" in req.headers or "x-api-key" in req.headers)
        )
        hexid = self._next_hex()
        base_headers = [("request-id", "req_" + hexid), ("x-request-id", "req_" + hexid)]
        if not req.keep_alive:
            base_headers.append(("connection", "close"))

        if endpoint is None and req.method in ("GET", "HEAD") and req.path == "/":
            rec.completed, rec.outcome = True, "ok"  # liveness probe
            conn.write(build_head(200, base_headers + [("content-type", "text/plain"), ("content-length", "2")]))
            if req.method == "GET":
                conn.write(b"ok")
            return
        if endpoint is None:
            send_error(conn, rec, anthropic, 404, None, base_headers, "req_" + hexid)
            return
        script = self._take_script(endpoint, model, rec)
        rec.script = script
        s = script if script is not None else self._default

        # Fast path: default answer, no faults, not streaming -> cached bytes.
        if (
            script is None
            and self._default_plain
            and not stream
            and endpoint in (CHAT, MESSAGES)
            and self.require_api_key is None
        ):
            rec.completed, rec.outcome = True, "ok"  # (set before writing: the client may look at once)
            conn.write(self._fast_nonstream(endpoint, parsed, model or "unknown", hexid, req.keep_alive))
            return

        # ---- pre-response faults ------------------------------------------
        if s.stall_before_headers and not await conn.sleep(s.stall_before_headers):
            self._disconnected(rec)
            return
        if s.reset_before_headers:
            rec.outcome = "reset"
            conn.abort()
            return
        if self.require_api_key is not None and not self._authorized(req.headers):
            send_error(conn, rec, anthropic, 401, None, base_headers, "req_" + hexid)
            return
        headers = base_headers + [(k.lower(), str(v)) for k, v in s.headers.items()]
        if s.retry_after is not None:
            headers.append(("retry-after", str(s.retry_after)))
        if s.status is not None and s.status >= 300:
            if s.raw_body is not None:
                rec.completed, rec.outcome = True, "error_status"
                conn.send(s.status, headers + [("content-type", JSON_CT)], raw_bytes(s.raw_body))
            else:
                send_error(conn, rec, anthropic, s.status, s, headers, "req_" + hexid)
            return

        # ---- success responses ------------------------------------------------
        status = s.status or 200
        if endpoint == COUNT_TOKENS:
            usage = resolve_usage(s, parsed, self.default_text)
            await send_body(conn, rec, s, status, headers, orjson.dumps(wa.count_tokens(usage.input_tokens)), self._disconnected)
            return
        if endpoint == MODELS:
            payload = wa.models_list(self.models) if anthropic else wo.models_list(self.models, int(time.time()))
            await send_body(conn, rec, s, status, headers, orjson.dumps(payload), self._disconnected)
            return
        if endpoint == EMBEDDINGS:
            await send_body(conn, rec, s, status, headers, orjson.dumps(embeddings(parsed, model)), self._disconnected)
            return

        resp_model = s.response_model or model or "unknown"
        if not stream:
            if s.raw_body is not None:
                body = raw_bytes(s.raw_body)
            elif s.malformed_json not in (None, False):
                body = render_malformed(endpoint, hexid)
            else:
                body = render_nonstream(endpoint, s, parsed, resp_model, hexid, self.default_text)
            await send_body(conn, rec, s, status, headers, body, self._disconnected)
            return

        frames = render_stream(endpoint, s, parsed, resp_model, hexid, self.default_text)
        await send_stream(conn, rec, s, status, headers, frames, endpoint, self._disconnected)

    def _fast_nonstream(self, endpoint: str, body: Any, model: str, hexid: str, keep_alive: bool) -> bytes:
        input_tokens = estimate_input_tokens(body)
        now = int(time.time())
        key = (endpoint, model, input_tokens, now, keep_alive)
        parts = self._fast_cache.get(key)
        if parts is None:
            if len(self._fast_cache) > 4096:
                self._fast_cache.clear()
            headers = [("content-type", JSON_CT), ("request-id", "req_" + _PLACEHOLDER), ("x-request-id", "req_" + _PLACEHOLDER)]
            if not keep_alive:
                headers.append(("connection", "close"))
            payload = render_nonstream(endpoint, Script(), body, model, _PLACEHOLDER, self.default_text)
            whole = build_head(200, headers + [("content-length", str(len(payload)))]) + payload
            parts = tuple(whole.split(_PLACEHOLDER.encode()))  # 3 holes: 2 header ids + body id
            self._fast_cache[key] = parts  # type: ignore[assignment]
        return hexid.encode().join(parts)

    def _disconnected(self, rec: RecordedRequest) -> None:
        rec.client_disconnected = True
        rec.outcome = "disconnected"
        self.client_disconnects += 1

    def _authorized(self, headers: dict[str, str]) -> bool:
        key = self.require_api_key
        auth = headers.get("authorization", "")
        return auth == f"Bearer {key}" or headers.get("x-api-key") == key or headers.get("api-key") == key

    # ---- control API -----------------------------------------------------------
    async def _control(self, conn: Connection, req: HTTPRequest) -> None:
        op = req.path[len("/_control/") :].strip("/")
        try:
            data = orjson.loads(req.body) if req.body else {}
            if req.method == "POST" and op == "enqueue":
                spec = data.get("script", data) if isinstance(data, dict) else data
                model = data.get("model") if isinstance(data, dict) and "script" in data else None
                self.enqueue(Script.from_dict(spec), model=model)
                result: Any = {"ok": True, "pending_scripts": self.pending_scripts}
            elif req.method == "POST" and op == "default":
                self.set_default(Script.from_dict(data))
                result = {"ok": True}
            elif req.method == "POST" and op == "clear":
                self.clear()
                result = {"ok": True}
            elif req.method == "POST" and op == "drop_idle":
                result = {"dropped": self._server.drop_idle()}
            elif req.method == "GET" and op == "requests":
                result = [r.to_dict() for r in self.requests]
            elif req.method == "GET" and op == "stats":
                result = self.stats()
            else:
                conn.send(404, [("content-type", JSON_CT)], b'{"error":"unknown control operation"}')
                return
        except (ValueError, TypeError) as exc:
            conn.send(400, [("content-type", JSON_CT)], orjson.dumps({"error": str(exc)}))
            return
        conn.send(200, [("content-type", JSON_CT)], orjson.dumps(result))


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Scripted fake OpenAI/Anthropic upstream")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--text", default=DEFAULT_TEXT, help="default answer text")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--api-key", default=None, help="require this key (Bearer / x-api-key)")
    parser.add_argument("--keepalive-timeout", type=float, default=None)
    parser.add_argument("--no-record", action="store_true", help="do not record requests (benchmarks)")
    args = parser.parse_args(argv)
    upstream = ScriptedUpstream(
        args.host,
        args.port,
        default_text=args.text,
        models=[m for m in args.models.split(",") if m],
        require_api_key=args.api_key,
        keepalive_timeout=args.keepalive_timeout,
        record=not args.no_record,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    upstream.start()
    print(f"scripted upstream listening on {upstream.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        upstream.stop()


if __name__ == "__main__":
    main()
