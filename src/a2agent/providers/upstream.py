"""Upstream HTTP: pooled keep-alive connections per channel, timeouts, credentials.

Timeouts: ``connect`` (TCP connect), ``first_byte`` (request sent → response headers),
``idle`` (between body chunks), ``total`` (the whole exchange, enforced by the caller via
:attr:`UpstreamResponse.deadline`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import AsyncIterator

import aiohttp

from a2agent.config import Settings
from a2agent.routing.catalog import ChannelInfo

ANTHROPIC_VERSION = "2023-06-01"


class UpstreamError(Exception):
    """The upstream failed without a usable HTTP response (or mid-body).

    kind: connect | first_byte_timeout | idle_timeout | total_timeout | reset | too_large
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    @property
    def is_timeout(self) -> bool:
        return self.kind.endswith("timeout")


@dataclass(frozen=True)
class Timeouts:
    connect: float
    first_byte: float
    idle: float
    total: float

    @classmethod
    def for_channel(cls, ch: ChannelInfo, s: Settings) -> "Timeouts":
        return cls(
            connect=ch.connect_timeout or s.upstream_connect_timeout,
            first_byte=ch.first_byte_timeout or s.upstream_first_byte_timeout,
            idle=ch.idle_timeout or s.upstream_idle_timeout,
            total=ch.total_timeout or s.upstream_total_timeout,
        )


class UpstreamResponse:
    def __init__(self, resp: aiohttp.ClientResponse, timeouts: Timeouts, deadline: float, max_bytes: int) -> None:
        self._resp = resp
        self.status = resp.status
        self.headers = resp.headers
        self.timeouts = timeouts
        self.deadline = deadline
        self.max_bytes = max_bytes
        self.received = 0

    async def chunks(self, heartbeat: float | None = None) -> AsyncIterator[bytes]:
        """Body chunks as they arrive; idle and total timeouts; size limit. With ``heartbeat``,
        an empty chunk is yielded whenever the upstream was silent that long (the caller may
        send a keep-alive); the idle timeout still counts from the last real chunk."""
        content = self._resp.content
        last = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= self.deadline:
                raise UpstreamError("total_timeout", "upstream exceeded the total time limit")
            wait = min(self.timeouts.idle - (now - last), self.deadline - now)
            if heartbeat is not None:
                wait = min(wait, heartbeat)
            try:
                async with asyncio.timeout(max(wait, 0.001)):
                    chunk = await content.readany()
            except TimeoutError:
                now = time.monotonic()
                if now >= self.deadline:
                    raise UpstreamError("total_timeout", "upstream exceeded the total time limit") from None
                if now - last >= self.timeouts.idle:
                    raise UpstreamError(
                        "idle_timeout", f"upstream sent nothing for {self.timeouts.idle:g}s"
                    ) from None
                yield b""
                continue
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ConnectionError) as exc:
                raise UpstreamError("reset", f"upstream connection failed: {_describe(exc)}") from None
            if not chunk:
                return
            last = time.monotonic()
            self.received += len(chunk)
            if self.received > self.max_bytes:
                raise UpstreamError("too_large", "upstream response exceeded the size limit")
            yield chunk

    async def read(self) -> bytes:
        parts = [c async for c in self.chunks()]
        return b"".join(parts)

    def release(self) -> None:
        """Return the connection to the pool when the body was fully read, else close it."""
        self._resp.release()

    def close(self) -> None:
        self._resp.close()


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class UpstreamPool:
    """One aiohttp session (connection pool) per channel."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._sessions: dict[tuple[int, str], aiohttp.ClientSession] = {}

    def _session(self, ch: ChannelInfo) -> aiohttp.ClientSession:
        key = (ch.id, ch.base_url)
        session = self._sessions.get(key)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=0, limit_per_host=0, keepalive_timeout=30, enable_cleanup_closed=True
            )
            session = aiohttp.ClientSession(
                connector=connector, auto_decompress=True, skip_auto_headers=("User-Agent",)
            )
            self._sessions[key] = session
        return session

    def headers(self, ch: ChannelInfo, caller_headers: dict[str, str] | None = None) -> dict[str, str]:
        h = {"content-type": "application/json", "accept": "application/json, text/event-stream",
             "user-agent": "a2agent"}
        caller_headers = caller_headers or {}
        if ch.protocol == "anthropic":
            if ch.api_key:
                h["x-api-key"] = ch.api_key
            h["anthropic-version"] = caller_headers.get("anthropic-version") or ANTHROPIC_VERSION
            if beta := caller_headers.get("anthropic-beta"):
                h["anthropic-beta"] = beta
        elif ch.api_key:
            h["authorization"] = f"Bearer {ch.api_key}"
        h.update(ch.extra_headers)
        return h

    async def post(
        self,
        ch: ChannelInfo,
        path: str,
        body: bytes,
        *,
        caller_headers: dict[str, str] | None = None,
        timeouts: Timeouts | None = None,
    ) -> UpstreamResponse:
        """Send the request; returns once response headers arrived."""
        t = timeouts or Timeouts.for_channel(ch, self.settings)
        deadline = time.monotonic() + t.total
        url = ch.base_url + path
        session = self._session(ch)
        try:
            async with asyncio.timeout(min(t.first_byte, t.total)):
                resp = await session.post(
                    url,
                    data=body,
                    headers=self.headers(ch, caller_headers),
                    timeout=aiohttp.ClientTimeout(total=None, sock_connect=t.connect, connect=t.connect),
                    allow_redirects=False,
                )
        except aiohttp.ServerTimeoutError:
            # before TimeoutError: aiohttp's connect timeout is a TimeoutError subclass too
            raise UpstreamError("connect", f"could not connect to upstream within {t.connect:g}s") from None
        except TimeoutError:
            raise UpstreamError(
                "first_byte_timeout", f"upstream did not answer within {min(t.first_byte, t.total):g}s"
            ) from None
        except aiohttp.ClientConnectorError as exc:
            raise UpstreamError("connect", f"could not connect to upstream: {_describe(exc)}") from None
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise UpstreamError("reset", f"upstream connection failed: {_describe(exc)}") from None
        except ValueError:
            # aiohttp refuses to build the request (e.g. a control character in the channel's
            # credential or extra headers): the channel cannot be used, like a connect failure.
            # The text is not relayed: it may quote the offending value.
            raise UpstreamError("connect", "the request to the upstream could not be sent (check the "
                                           "channel's base URL, credential and extra headers)") from None
        return UpstreamResponse(resp, t, deadline,
                                ch.max_response_bytes or self.settings.upstream_max_response_bytes)

    def open_connections(self) -> int:
        total = 0
        for session in self._sessions.values():
            conn = session.connector
            if conn is not None:
                total += sum(len(v) for v in getattr(conn, "_acquired_per_host", {}).values())
        return total

    async def close(self) -> None:
        for session in list(self._sessions.values()):
            await session.close()
        self._sessions.clear()
