"""Unit tier: the circuit breaker, the channel concurrency limit and the route selector."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import replace

import pytest

from a2agent.billing.money import Prices
from a2agent.routing.catalog import ChannelInfo, ModelEntry, Route
from a2agent.routing.health import ChannelHealth, Selector, _parse_retry_after


def channel(cid: int, *, enabled: bool = True, max_concurrency: int | None = None,
            max_queue: int | None = None) -> ChannelInfo:
    return ChannelInfo(id=cid, name=f"ch{cid}", protocol="openai", base_url="http://127.0.0.1:1",
                       api_key=None, extra_headers={}, priority=0, weight=1, enabled=enabled,
                       connect_timeout=None, first_byte_timeout=None, idle_timeout=None,
                       total_timeout=None, max_concurrency=max_concurrency,
                       supports_reasoning=False, max_queue=max_queue)


def entry(*routes: Route) -> ModelEntry:
    return ModelEntry(model_id="m", context_window=None, prices=Prices(0, 0, 0, 0), routes=routes)


async def test_breaker_opens_after_threshold_and_half_open_probe_decides() -> None:
    health = ChannelHealth(failure_threshold=3, cooldown=0.05)
    ch = channel(1)
    for _ in range(3):
        assert await health.acquire(ch) is not None
        health.release(ch, ok=False, latency=0.01)
    assert health.describe(ch) == "open"
    assert not health.available(ch)
    seconds, why = health.retry_in([ch])
    assert (seconds, why) == (1, "circuit_open")
    await asyncio.sleep(0.06)
    assert health.describe(ch) == "half_open"
    probe = await health.acquire(ch)
    assert probe is not None and probe.probe_in_flight
    assert not health.available(ch), "only one probe at a time"
    health.release(ch, ok=False, latency=0.01)  # a failed probe reopens at once
    assert health.describe(ch) == "open"
    await asyncio.sleep(0.06)
    assert await health.acquire(ch) is not None
    health.release(ch, ok=True, latency=0.01)
    assert health.describe(ch) == "closed" and health.state(ch).consecutive_failures == 0


async def test_a_success_resets_the_failure_count() -> None:
    health = ChannelHealth(failure_threshold=2, cooldown=30)
    ch = channel(1)
    for ok in (False, True, False):
        await health.acquire(ch)
        health.release(ch, ok=ok, latency=0.0)
    assert health.describe(ch) == "closed"


async def test_concurrency_limit_queues_then_refuses_when_the_queue_is_full() -> None:
    health = ChannelHealth()
    ch = channel(1, max_concurrency=1, max_queue=1)
    assert await health.acquire(ch) is not None
    waiter = asyncio.create_task(health.acquire(ch, queue_timeout=5))
    await asyncio.sleep(0)
    assert await health.acquire(ch, queue_timeout=5) is None, "queue of one is full"
    health.release(ch, ok=True, latency=0.0)  # hands the slot to the waiter
    assert await waiter is not None
    assert health.state(ch).in_flight == 1
    health.release(ch, ok=True, latency=0.0)
    assert health.state(ch).in_flight == 0


async def test_queue_wait_times_out_without_holding_a_slot() -> None:
    health = ChannelHealth()
    ch = channel(1, max_concurrency=1, max_queue=4)
    await health.acquire(ch)
    assert await health.acquire(ch, queue_timeout=0.01) is None
    assert not health.state(ch).waiters
    health.release(ch, ok=True, latency=0.0)
    assert health.state(ch).in_flight == 0


async def test_upstream_retry_after_blocks_the_channel() -> None:
    health = ChannelHealth()
    ch = channel(1)
    await health.acquire(ch)
    health.release(ch, ok=False, latency=0.0, retry_after="2")
    assert not health.available(ch)
    assert health.retry_in([ch]) == (2, "rate_limited")


@pytest.mark.parametrize("value, low, high", [
    (None, 0, 0), ("", 0, 0), ("3", 3, 3), ("-5", 0, 0), ("nan", 0, 0), ("99999", 3600, 3600),
    ("garbage", 0, 0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0, 0),
])
def test_retry_after_parsing(value: str | None, low: float, high: float) -> None:
    assert low <= _parse_retry_after(value) <= high


def test_selector_orders_by_priority_then_weight_and_skips_unusable() -> None:
    health = ChannelHealth()
    high = Route(channel(1), "up", priority=10, weight=1)
    heavy = Route(channel(2), "up", priority=0, weight=9)
    light = Route(channel(3), "up", priority=0, weight=1)
    off = Route(channel(4, enabled=False), "up", priority=99, weight=1)
    selector = Selector(health, random.Random(7))
    firsts: Counter[int] = Counter()
    for _ in range(2000):
        order = selector.order(entry(light, off, heavy, high))
        assert order[0] is high and off not in order and len(order) == 3
        firsts[order[1].channel.id] += 1
    share = firsts[2] / 2000
    assert 0.85 < share < 0.95, share  # weight 9 : 1


def test_selector_leaves_out_an_open_circuit() -> None:
    health = ChannelHealth(failure_threshold=1, cooldown=60)
    a, b = Route(channel(1), "up", 0, 1), Route(channel(2), "up", 0, 1)
    st = health.state(a.channel)
    st.in_flight = 1
    health.release(a.channel, ok=False, latency=0.0)
    assert Selector(health).order(entry(a, b)) == [b]
    assert Selector(health).order(entry(replace(a, priority=5))) == []
