"""Redis for admission (shared rate limits and concurrency), with a degraded mode.

When a Redis call fails, Redis is marked down (one log line) and admission counts per
instance. While it is down it is not asked at all — no request waits on a dead socket — and
a probe pings it every half second; the first answer marks it back (one log line), the
connections from before the outage are dropped, and the shared counters are used again
from the next request on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from a2agent.store.faults import REDIS, DependencyHealth, DependencyUnavailable

T = TypeVar("T")

PROBE_SECONDS = 0.5


class RedisGuard:
    def __init__(self, redis: Any, deps: DependencyHealth, timeout: float) -> None:
        self.redis = redis
        self.deps = deps
        self.timeout = timeout
        self._probe: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        return not self.deps.is_down(REDIS)

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """``call()`` on Redis, or DependencyUnavailable at once while Redis is down."""
        if not self.up:
            raise DependencyUnavailable(REDIS, "down", maybe_written=False)
        try:
            async with asyncio.timeout(self.timeout):
                return await call()
        except Exception as exc:  # noqa: BLE001 - any Redis failure: count per instance
            raise self._down(exc) from exc

    def _down(self, exc: BaseException) -> DependencyUnavailable:
        err = self.deps.failed(DependencyUnavailable(REDIS, type(exc).__name__))
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._probe_loop())
        return err

    async def _probe_loop(self) -> None:
        try:
            while not self.up:
                await asyncio.sleep(PROBE_SECONDS)
                try:
                    async with asyncio.timeout(self.timeout):
                        await self.redis.ping()
                except Exception:  # noqa: BLE001, S112 - still down (logged when it went)
                    continue
                await self._back()
        finally:
            self._probe = None

    async def ping(self) -> bool:
        """Readiness detail: is Redis answering (updates the state either way)?"""
        try:
            async with asyncio.timeout(min(self.timeout, 0.5)):
                await self.redis.ping()
        except Exception as exc:  # noqa: BLE001 - not answering is the answer
            self._down(exc)
            return False
        await self._back()
        return True

    async def _back(self) -> None:
        if not self.up:
            # connections made before a restart would fail once each: drop them all first
            await self.redis.connection_pool.disconnect()
            self.deps.ok(REDIS)

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
