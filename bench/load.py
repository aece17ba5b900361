"""Load generation for the data-plane benchmark: keep-alive pooled aiohttp clients sending one
fixed request, either straight to the upstream or through the gateway.

Every loop is bounded by a request count, and the throughput loop also by a deadline.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp
import orjson


@dataclass(frozen=True)
class Target:
    """One way to send the scenario's request: `direct` (upstream) or `gateway`."""

    name: str
    url: str
    headers: dict[str, str]
    body: bytes
    stream: bool = False


@dataclass
class Errors:
    counts: Counter = field(default_factory=Counter)

    def add(self, what: str) -> None:
        self.counts[what] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def session(concurrency: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, keepalive_timeout=120)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60),
                                 auto_decompress=False)


async def check(sess: aiohttp.ClientSession, t: Target) -> None:
    """One request whose answer must be a 200 of the expected shape (else the run is void)."""
    async with sess.post(t.url, data=t.body, headers=t.headers) as r:
        raw = await r.read()
        if r.status != 200:
            raise RuntimeError(f"{t.name} {t.url}: HTTP {r.status}: {raw[:300]!r}")
    if t.stream:
        if b"data:" not in raw and b"event:" not in raw:
            raise RuntimeError(f"{t.name} {t.url}: not an event stream: {raw[:300]!r}")
        return
    data = orjson.loads(raw)
    if not ("choices" in data or "content" in data or "output" in data):
        raise RuntimeError(f"{t.name} {t.url}: unexpected answer: {raw[:300]!r}")


async def one(sess: aiohttp.ClientSession, t: Target, errors: Errors) -> float | None:
    """Seconds from sending to the last body byte; None on an error (counted)."""
    t0 = time.perf_counter()
    try:
        async with sess.post(t.url, data=t.body, headers=t.headers) as r:
            await r.read()
            status = r.status
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        errors.add(type(exc).__name__)
        return None
    elapsed = time.perf_counter() - t0
    if status != 200:
        errors.add(f"http_{status}")
        return None
    return elapsed


async def one_stream(sess: aiohttp.ClientSession, t: Target, errors: Errors) -> tuple[float, float] | None:
    """(time to first body byte, time to the end of the stream) in seconds; None on an error."""
    t0 = time.perf_counter()
    first = None
    try:
        async with sess.post(t.url, data=t.body, headers=t.headers) as r:
            status = r.status
            async for _chunk in r.content.iter_any():
                if first is None:
                    first = time.perf_counter() - t0
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        errors.add(type(exc).__name__)
        return None
    total = time.perf_counter() - t0
    if status != 200 or first is None:
        errors.add(f"http_{status}" if status != 200 else "empty_stream")
        return None
    return first, total


async def sequential(sess: aiohttp.ClientSession, t: Target, n: int, errors: Errors) -> list:
    """n requests one after another (concurrency 1): a latency sample per success."""
    out = []
    call = one_stream if t.stream else one
    for _ in range(n):
        r = await call(sess, t, errors)
        if r is not None:
            out.append(r)
    return out


async def saturate(sess: aiohttp.ClientSession, t: Target, concurrency: int, max_requests: int,
                   max_seconds: float, errors: Errors) -> dict:
    """`concurrency` workers send back to back until max_requests were started or max_seconds
    passed; returns sent, ok, elapsed (first send to last answer) and requests/s."""
    started = 0
    ok = 0
    deadline = time.perf_counter() + max_seconds
    call = one_stream if t.stream else one

    async def worker() -> None:
        nonlocal started, ok
        while started < max_requests and time.perf_counter() < deadline:
            started += 1
            if await call(sess, t, errors) is not None:
                ok += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - t0
    return {"sent": started, "ok": ok, "elapsed_s": elapsed, "rps": ok / elapsed if elapsed > 0 else 0.0}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))
    return s[k]
