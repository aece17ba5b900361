"""A minimal HTTP/1.1 server on raw asyncio protocols.

Only what a test upstream needs, but with full control over the socket:
keep-alive, Content-Length and chunked request bodies, fixed-length and
chunked responses, abrupt resets (SO_LINGER 0), idle-connection dropping and
disconnect detection while a handler sleeps.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import traceback
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Awaitable, Callable, Optional
from urllib.parse import unquote

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_REASONS[529] = "Site Overloaded"


class BadRequest(Exception):
    pass


@dataclass
class HTTPRequest:
    method: str
    target: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    body: bytes = b""
    keep_alive: bool = True


@dataclass
class ConnStats:
    open: int = 0
    total: int = 0
    connections: set = field(default_factory=set)
    errors: list = field(default_factory=list)  # exceptions raised by the handler


Handler = Callable[["Connection", HTTPRequest], Awaitable[None]]


def status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "Unknown").encode())


def build_head(status: int, headers: list[tuple[str, str]]) -> bytes:
    parts = [status_line(status)]
    for k, v in headers:
        parts.append(k.encode("latin-1") + b": " + str(v).encode("latin-1") + b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class Connection(asyncio.Protocol):
    """One client connection; serves requests sequentially (keep-alive)."""

    def __init__(self, handler: Handler, stats: ConnStats, keepalive_timeout: Optional[float]) -> None:
        self._handler = handler
        self._stats = stats
        self._keepalive_timeout = keepalive_timeout
        self._buf = bytearray()
        self._eof = False
        self.lost = False
        self.idle = True  # waiting for (the start of) a request
        self.must_close = False
        self.response_started = False
        self.transport: Optional[asyncio.Transport] = None
        self._loop = asyncio.get_running_loop()
        self._data = asyncio.Event()
        self._closed: asyncio.Future = self._loop.create_future()
        self._can_write: Optional[asyncio.Future] = None
        self._task: Optional[asyncio.Task] = None

    # --- asyncio.Protocol ---------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._stats.open += 1
        self._stats.total += 1
        self._stats.connections.add(self)
        self._task = self._loop.create_task(self._serve())

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._data.set()

    def eof_received(self) -> None:
        self._eof = True
        self._data.set()
        return None  # let the transport close itself

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        if self.lost:
            return
        self.lost = True
        self._stats.open -= 1
        self._stats.connections.discard(self)
        self._data.set()
        if not self._closed.done():
            self._closed.set_result(None)
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def pause_writing(self) -> None:
        if self._can_write is None or self._can_write.done():
            self._can_write = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    # --- reading ------------------------------------------------------------
    async def _wait_data(self, timeout: Optional[float] = None) -> bool:
        self._data.clear()
        if timeout is None:
            await self._data.wait()
            return True
        try:
            await asyncio.wait_for(self._data.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def _read_exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            if self.lost or self._eof:
                raise ConnectionError("client went away mid-body")
            await self._wait_data()
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def _read_line(self) -> bytes:
        while True:
            idx = self._buf.find(b"\r\n")
            if idx >= 0:
                line = bytes(self._buf[:idx])
                del self._buf[: idx + 2]
                return line
            if self.lost or self._eof:
                raise ConnectionError("client went away mid-body")
            if len(self._buf) > MAX_HEAD:
                raise BadRequest("line too long")
            await self._wait_data()

    async def read_request(self) -> Optional[HTTPRequest]:
        self.idle = True
        while True:
            idx = self._buf.find(b"\r\n\r\n")
            if idx >= 0:
                break
            if self.lost or self._eof:
                return None
            if len(self._buf) > MAX_HEAD:
                raise BadRequest("request head too large")
            timeout = self._keepalive_timeout if not self._buf else None
            if not await self._wait_data(timeout):
                return None  # idle keep-alive timeout
        self.idle = False
        head = bytes(self._buf[:idx]).decode("latin-1")
        del self._buf[: idx + 4]
        lines = head.split("\r\n")
        while lines and not lines[0]:  # tolerate stray CRLF between requests
            lines.pop(0)
        try:
            method, target, version = lines[0].split(" ", 2)
        except (ValueError, IndexError):
            raise BadRequest("bad request line") from None
        raw_headers: list[tuple[str, str]] = []
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise BadRequest("bad header line")
            name = name.strip().lower()
            value = value.strip()
            raw_headers.append((name, value))
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        path, _, query = target.partition("?")
        conn_tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep_alive = "close" not in conn_tokens if version == "HTTP/1.1" else "keep-alive" in conn_tokens
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await self._read_chunked()
        else:
            length = int(headers.get("content-length", "0") or 0)
            if length < 0 or length > MAX_BODY:
                raise BadRequest("bad content-length")
            body = await self._read_exact(length) if length else b""
        return HTTPRequest(method, target, unquote(path), query, version, headers, raw_headers, body, keep_alive)

    async def _read_chunked(self) -> bytes:
        parts = []
        total = 0
        while True:
            size_line = await self._read_line()
            size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while await self._read_line():  # trailers until blank line
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY:
                raise BadRequest("body too large")
            parts.append(await self._read_exact(size))
            await self._read_exact(2)

    # --- serving loop -----------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while not self.lost:
                try:
                    req = await self.read_request()
                except BadRequest as exc:
                    self.send(400, [("content-type", "text/plain"), ("connection", "close")], str(exc).encode())
                    self.close()
                    return
                except ConnectionError:
                    return
                if req is None:
                    self.close()
                    return
                self.response_started = False
                await self._handler(self, req)
                if self.lost:
                    return
                if self.must_close or not req.keep_alive:
                    self.close()
                    return
        except asyncio.CancelledError:
            self.abort()
            raise
        except Exception as exc:  # a handler bug (e.g. a Script.match that raised)
            self._stats.errors.append(exc)
            traceback.print_exc()
            if self.response_started:
                self.abort()
            else:
                # JSON readable by both SDKs' error parsers
                msg = json.dumps(
                    {"type": "error", "error": {"type": "api_error", "message": f"scripted upstream crashed: {exc!r}"}}
                ).encode()
                self.send(500, [("content-type", "application/json"), ("connection", "close")], msg)
                self.close()

    # --- writing ------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        self.response_started = True
        if not self.lost and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            await self._can_write

    def send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        """A complete fixed-length response in one write."""
        self.write(build_head(status, headers + [("content-length", str(len(body)))]) + body)

    def start_chunked(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.write(build_head(status, headers + [("transfer-encoding", "chunked")]))

    async def write_chunk(self, data: bytes) -> None:
        if data:
            self.write(b"%x\r\n%s\r\n" % (len(data), data))
            await self.drain()

    def end_chunked(self, last: bytes = b"") -> None:
        """Terminate the chunked body, with ``last`` as a final data chunk in the SAME
        write: clients that stop reading at ``[DONE]`` / ``message_stop`` then also
        get the terminator and can return the connection to their pool."""
        head = b"%x\r\n%s\r\n" % (len(last), last) if last else b""
        self.write(head + b"0\r\n\r\n")

    async def sleep(self, seconds: float) -> bool:
        """Sleep, but wake early if the client disconnects.  True = still connected."""
        if self.lost:
            return False
        if seconds <= 0:
            return True
        try:
            await asyncio.wait_for(asyncio.shield(self._closed), seconds)
        except asyncio.TimeoutError:
            pass
        return not self.lost

    def close(self) -> None:
        """Graceful close (FIN after flushing)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Abrupt close: RST, unsent data discarded."""
        self.must_close = True
        if self.transport is None:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
        self.transport.abort()


class HTTPServer:
    def __init__(self, handler: Handler, keepalive_timeout: Optional[float] = None) -> None:
        self.handler = handler
        self.keepalive_timeout = keepalive_timeout
        self.stats = ConnStats()
        self._server: Optional[asyncio.AbstractServer] = None

    async def start(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self.handler, self.stats, self.keepalive_timeout),
            host,
            port,
            reuse_address=True,
            backlog=1024,
        )
        return self._server.sockets[0].getsockname()[1]

    def drop_idle(self) -> int:
        dropped = 0
        for conn in list(self.stats.connections):
            if conn.idle and not conn._buf:
                conn.close()
                dropped += 1
        return dropped

    async def stop(self) -> None:
        conns = list(self.stats.connections)
        tasks = [c._task for c in conns if c._task is not None and not c._task.done()]
        if self._server is not None:
            self._server.close()
        for conn in conns:
            conn.abort()
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            try:
                await asyncio.wait_for(self._server.wait_closed(), 2)
            except asyncio.TimeoutError:  # pragma: no cover
                pass
