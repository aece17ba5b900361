"""Channel health: a circuit breaker, a concurrency limit and recent statistics per channel.

Per process by design: each instance judges the upstreams it talks to. States: ``closed``
(normal), ``open`` (after ``failure_threshold`` consecutive failures; not used until
``cooldown`` passed), ``half_open`` (one probe request allowed; success closes, failure reopens).
An upstream 429's ``Retry-After`` also keeps the channel out until then.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import random
import time
from collections import deque
from dataclasses import dataclass, field

from a2agent.routing.catalog import ChannelInfo, ModelEntry, Route


@dataclass
class ChannelState:
    state: str = "closed"
    consecutive_failures: int = 0
    opened_at: float = 0.0
    probe_in_flight: bool = False
    in_flight: int = 0
    blocked_until: float = 0.0
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    outcomes: deque[tuple[float, bool, float]] = field(default_factory=lambda: deque(maxlen=200))

    def error_rate(self, window: float = 300.0) -> float | None:
        now = time.monotonic()
        recent = [ok for t, ok, _ in self.outcomes if now - t <= window]
        return None if not recent else 1 - sum(recent) / len(recent)

    def latency_ms(self, window: float = 300.0) -> float | None:
        now = time.monotonic()
        values = sorted(lat for t, ok, lat in self.outcomes if ok and now - t <= window)
        return None if not values else values[len(values) // 2] * 1000


def _parse_retry_after(value: str | None) -> float:
    """Seconds from a Retry-After header: delay-seconds or an HTTP-date (RFC 9110 §10.2.3)."""
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return 0.0
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return 0.0
    return min(max(seconds, 0.0), 3600.0)


class ChannelHealth:
    def __init__(self, failure_threshold: int = 5, cooldown: float = 30.0) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown = cooldown
        self._states: dict[int, ChannelState] = {}

    def state(self, ch: ChannelInfo) -> ChannelState:
        st = self._states.get(ch.id)
        if st is None:
            st = self._states[ch.id] = ChannelState()
        return st

    def describe(self, ch: ChannelInfo) -> str:
        st = self.state(ch)
        if st.state == "open" and time.monotonic() - st.opened_at >= self.cooldown:
            return "half_open"
        return st.state

    def retry_in(self, channels: list[ChannelInfo]) -> tuple[int, str]:
        """(seconds until one of these channels may be used again, why) when none may now."""
        return _retry_in(self, channels)

    def available(self, ch: ChannelInfo) -> bool:
        if not ch.enabled:
            return False
        st = self.state(ch)
        now = time.monotonic()
        if st.blocked_until > now:
            return False
        if st.state == "open":
            return now - st.opened_at >= self.cooldown and not st.probe_in_flight
        if st.state == "half_open":
            return not st.probe_in_flight
        return True

    async def acquire(self, ch: ChannelInfo, queue_timeout: float = 60.0) -> ChannelState | None:
        """Take a slot for one attempt, or None when the channel may not be used now.

        At ``max_concurrency`` a request waits in a bounded FIFO queue (``max_queue``); when
        the queue is full, or the wait exceeds ``queue_timeout``, the answer is None."""
        st = self.state(ch)
        if not self.available(ch):
            return None
        if ch.max_concurrency and st.in_flight >= ch.max_concurrency:
            if len(st.waiters) >= (ch.max_queue or 0):
                return None
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            st.waiters.append(fut)
            try:
                await asyncio.wait_for(fut, queue_timeout)
            except TimeoutError:
                if fut in st.waiters:
                    st.waiters.remove(fut)
                return None
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and not self._wake(st):
                    st.in_flight = max(st.in_flight - 1, 0)  # hand back the slot we were given
                raise
            # the releasing request handed its slot over: in_flight was not decremented
            return st
        if st.state in ("open", "half_open"):
            st.state = "half_open"
            st.probe_in_flight = True
        st.in_flight += 1
        return st

    @staticmethod
    def _wake(st: ChannelState) -> bool:
        while st.waiters:
            fut = st.waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return True
        return False

    def release(self, ch: ChannelInfo, *, ok: bool, latency: float, retry_after: str | None = None,
                counted: bool = True) -> None:
        """Free the attempt's slot. ``counted=False``: the attempt ended for a reason that says
        nothing about the channel (our own failure, a cancellation): no outcome is recorded
        and the breaker does not move (a probe's turn passes to the next request)."""
        st = self.state(ch)
        if not self._wake(st):  # a queued request inherits the slot
            st.in_flight = max(st.in_flight - 1, 0)
        if not counted:
            st.probe_in_flight = False
            return
        st.outcomes.append((time.monotonic(), ok, latency))
        if retry_after is not None:
            st.blocked_until = time.monotonic() + _parse_retry_after(retry_after)
        was_probe = st.probe_in_flight
        st.probe_in_flight = False
        if ok:
            st.consecutive_failures = 0
            st.state = "closed"
            return
        st.consecutive_failures += 1
        if was_probe or st.consecutive_failures >= self.failure_threshold:
            st.state = "open"
            st.opened_at = time.monotonic()


def _ceil(x: float) -> int:
    return max(int(x) + (1 if x > int(x) else 0), 1)


def _retry_in(health: "ChannelHealth", channels: list[ChannelInfo]) -> tuple[int, str]:
    now = time.monotonic()
    waits: list[tuple[float, str]] = []
    for ch in channels:
        if not ch.enabled:
            continue
        st = health.state(ch)
        if st.blocked_until > now:
            waits.append((st.blocked_until - now, "rate_limited"))
        elif st.state in ("open", "half_open"):
            waits.append((max(health.cooldown - (now - st.opened_at), 1.0), "circuit_open"))
    if not waits:
        return 0, "none"
    wait, why = min(waits)
    return _ceil(wait), why


class Selector:
    """Order a model's routes: best priority first, weighted random within a priority,
    channels that may not be used now left out."""

    def __init__(self, health: ChannelHealth, rng: random.Random | None = None) -> None:
        self.health = health
        self.rng = rng or random.Random()

    def order(self, entry: ModelEntry) -> list[Route]:
        usable = [r for r in entry.routes if self.health.available(r.channel)]
        if len(usable) <= 1:
            return usable
        by_priority: dict[int, list[Route]] = {}
        for r in usable:
            by_priority.setdefault(r.priority, []).append(r)
        ordered: list[Route] = []
        for prio in sorted(by_priority, reverse=True):
            group = by_priority[prio]
            while group:
                pick = self.rng.choices(range(len(group)), weights=[max(r.weight, 1) for r in group])[0]
                ordered.append(group.pop(pick))
        return ordered
