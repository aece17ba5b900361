"""Channel health (issue 9 §1-§3): priorities and weights, the circuit breaker, Retry-After."""

from __future__ import annotations

import email.utils
import random
import time
from collections import Counter

import pytest

from a2agent.routing.health import Selector
from tests.routing.conftest import (
    COST_A, COST_B, TEXT_A, TEXT_B, USAGE_A, Rig, Tenant, assert_answer, assert_error_body, attempts, wait_for,
)
from tests.support import Script


def _entry(rig: Rig, model: str):  # type: ignore[no-untyped-def]
    cat = rig.env.services.catalog
    return rig.env.call(cat.snapshot(rig.env.call(cat.current_version()))).models[model]


# ---- selection -------------------------------------------------------------------------------
def test_priority_then_weight(rig: Rig) -> None:
    """``spread``: a-oai (prio 5, weight 3) and b-oai (prio 5, weight 1), then b-ant (prio 0)."""
    entry = _entry(rig, "spread")
    sel = Selector(rig.gw.health, random.Random(7))
    firsts = Counter(sel.order(entry)[0].channel.name for _ in range(4000))
    assert set(firsts) == {"a-oai", "b-oai"}
    assert 0.71 < firsts["a-oai"] / 4000 < 0.79, firsts
    assert all(sel.order(entry)[-1].channel.name == "b-ant" for _ in range(50))  # lower priority last


def test_weighted_traffic_reaches_both_channels(rig: Rig, tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rig.gw.selector, "rng", random.Random(11))  # deterministic picks
    for _ in range(30):
        assert rig.send(tenant, "openai", "spread", stream=False).status == 200
    a, b = len(rig.a.requests), len(rig.b.requests)
    assert a + b == 30 and a > b > 0, (a, b)
    assert {rec.channel for rec in tenant.records()} == {"a-oai", "b-oai"}


def test_next_priority_only_when_the_best_is_out(rig: Rig, tenant: Tenant) -> None:
    rig.tune("a-oai", enabled=False)
    rig.tune("b-oai", enabled=False)
    r = rig.send(tenant, "anthropic", "spread", stream=True)
    assert_answer(r, "anthropic", True, TEXT_B)
    assert attempts(tenant.only_record()) == [("b-ant", "ok")]


@pytest.mark.parametrize("caller", ["openai", "anthropic"])
def test_disabled_channels(rig: Rig, tenant: Tenant, caller: str) -> None:
    rig.tune("a-oai", enabled=False)
    assert_answer(rig.send(tenant, caller, "duo-oai", stream=False), caller, False, TEXT_B)
    err = assert_error_body(rig.send(tenant, caller, "solo-oai", stream=False), caller, 503)
    assert "no upstream channel" in err["message"].lower()
    assert not rig.a.requests


# ---- circuit breaker -------------------------------------------------------------------------
def _trip(rig: Rig, t: Tenant, n: int, model: str = "duo-oai") -> None:
    rig.a.enqueue(Script(status=500, repeat=n))
    for _ in range(n):
        rig.send(t, "openai", model, stream=False)


def test_breaker_opens_skips_half_opens_and_closes(rig: Rig, tenant: Tenant) -> None:
    health = rig.gw.health
    health.failure_threshold, health.cooldown = 2, 0.4
    _trip(rig, tenant, 1)
    assert rig.describe("a-oai") == "closed" and rig.state("a-oai").consecutive_failures == 1
    _trip(rig, tenant, 1)
    assert rig.describe("a-oai") == "open"
    # open: the channel is skipped, the backup answers at once
    r = rig.send(tenant, "anthropic", "duo-oai", stream=True)
    assert_answer(r, "anthropic", True, TEXT_B)
    assert len(rig.a.requests) == 2
    # after the cool-down one request probes the channel; its success closes the circuit
    wait_for(lambda: rig.describe("a-oai") == "half_open", 5, "the cool-down")
    r = rig.send(tenant, "openai", "duo-oai", stream=True)
    assert_answer(r, "openai", True, TEXT_A)
    assert rig.describe("a-oai") == "closed" and rig.state("a-oai").consecutive_failures == 0
    recs = sorted(tenant.records(), key=lambda rec: rec.created_at)
    assert [attempts(rec) for rec in recs] == [
        [("a-oai", "http_500"), ("b-ant", "ok")],
        [("a-oai", "http_500"), ("b-ant", "ok")],
        [("b-ant", "ok")],
        [("a-oai", "ok")],
    ]
    assert [rec.cost_micro for rec in recs] == [COST_B, COST_B, COST_B, COST_A]


def test_failed_probe_reopens_the_circuit(rig: Rig, tenant: Tenant) -> None:
    health = rig.gw.health
    health.failure_threshold, health.cooldown = 1, 0.3
    _trip(rig, tenant, 1)
    opened = rig.state("a-oai").opened_at
    wait_for(lambda: rig.describe("a-oai") == "half_open", 5, "the cool-down")
    rig.a.enqueue(Script(reset_before_headers=True))
    assert_answer(rig.send(tenant, "openai", "duo-oai", stream=False), "openai", False, TEXT_B)
    st = rig.state("a-oai")
    assert st.state == "open" and st.opened_at > opened and not st.probe_in_flight


def test_mid_stream_failures_count_too(rig: Rig, tenant: Tenant) -> None:
    """The breaker counts failures after the answer started (they are not retried)."""
    rig.gw.health.failure_threshold = 2
    rig.a.enqueue(Script(reset_mid_stream=2, repeat=2))
    for _ in range(2):
        assert rig.send(tenant, "openai", "duo-oai", stream=True).events[-1][1]["error"]
    assert rig.describe("a-oai") == "open"
    assert_answer(rig.send(tenant, "openai", "duo-oai", stream=True), "openai", True, TEXT_B)


@pytest.mark.parametrize("caller", ["openai", "anthropic"])
def test_open_circuit_on_the_only_channel(rig: Rig, tenant: Tenant, caller: str) -> None:
    """503 with Retry-After until the cool-down ends (overloaded_error for Anthropic callers);
    nothing reaches the upstream, nothing is charged."""
    rig.gw.health.failure_threshold = 2
    _trip(rig, tenant, 2, model="solo-oai")
    r = rig.send(tenant, caller, "solo-oai", stream=True)
    err = assert_error_body(r, caller, 503)
    if caller == "anthropic":
        assert err["type"] == "overloaded_error"
    assert 28 <= int(r.headers["retry-after"]) <= 30, r.headers
    assert len(rig.a.requests) == 2
    assert tenant.balance() == tenant.start_balance


def test_half_open_lets_one_probe_through(rig: Rig, tenant: Tenant) -> None:
    health = rig.gw.health
    health.failure_threshold, health.cooldown = 1, 0.3
    rig.tune("a-oai", idle_timeout=5.0)
    _trip(rig, tenant, 1)
    wait_for(lambda: rig.describe("a-oai") == "half_open", 5, "the cool-down")
    rig.a.enqueue(Script(text=TEXT_A, usage=USAGE_A, stall_mid_stream=1.5, stall_after=2))
    probe = rig.background(rig.send, tenant, "openai", "duo-oai", True)
    wait_for(lambda: rig.state("a-oai").probe_in_flight, 5, "the probe to start")
    # while the probe runs, other requests keep away from the channel
    assert_answer(rig.send(tenant, "openai", "duo-oai", stream=False), "openai", False, TEXT_B)
    assert rig.send(tenant, "openai", "solo-oai", stream=False).status == 503
    assert_answer(probe.result(10), "openai", True, TEXT_A)
    assert rig.describe("a-oai") == "closed"
    assert len(rig.a.requests) == 2


# ---- Retry-After -----------------------------------------------------------------------------
@pytest.mark.parametrize("caller", ["openai", "anthropic"])
def test_retry_after_on_the_only_channel(rig: Rig, tenant: Tenant, caller: str) -> None:
    rig.a.enqueue(Script(status=429, retry_after=1))
    r = rig.send(tenant, caller, "solo-oai", stream=False)
    err = assert_error_body(r, caller, 429)
    assert r.headers["retry-after"] == "1"
    if caller == "anthropic":
        assert err["type"] == "rate_limit_error"
    # until then the gateway answers 429 itself, without asking the upstream
    r = rig.send(tenant, caller, "solo-oai", stream=True)
    assert_error_body(r, caller, 429)
    assert r.headers["retry-after"] == "1"
    assert len(rig.a.requests) == 1
    assert rig.state("a-oai").consecutive_failures == 0  # rate limited is not broken
    wait_for(lambda: rig.gw.health.available(rig.channel("a-oai")), 3, "the Retry-After to pass")
    assert_answer(rig.send(tenant, caller, "solo-oai", stream=True), caller, True, TEXT_A)
    rig.env.settle_all()  # the stream's settlement runs after its last byte
    assert tenant.balance() == tenant.start_balance - COST_A


def test_retry_after_keeps_the_channel_out_while_the_backup_answers(rig: Rig, tenant: Tenant) -> None:
    rig.a.enqueue(Script(status=429, retry_after=30))
    for caller in ("openai", "anthropic"):
        assert_answer(rig.send(tenant, caller, "duo-oai", stream=True), caller, True, TEXT_B)
    assert len(rig.a.requests) == 1
    recs = sorted(tenant.records(), key=lambda rec: rec.created_at)
    assert [attempts(rec) for rec in recs] == [[("a-oai", "http_429"), ("b-ant", "ok")], [("b-ant", "ok")]]


def test_retry_after_as_an_http_date(rig: Rig, tenant: Tenant) -> None:
    """Retry-After may be an HTTP-date (RFC 9110 §10.2.3) as well as seconds."""
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    rig.a.enqueue(Script(status=429, retry_after=when))
    assert_answer(rig.send(tenant, "openai", "duo-oai", stream=False), "openai", False, TEXT_B)
    left = rig.state("a-oai").blocked_until - time.monotonic()
    assert 15 < left <= 21, left
    r = rig.send(tenant, "openai", "solo-oai", stream=False)
    assert_error_body(r, "openai", 429)
    assert 15 <= int(r.headers["retry-after"]) <= 21
    assert len(rig.a.requests) == 1


@pytest.mark.parametrize("caller", ["openai", "anthropic"])
def test_every_channel_rate_limited(rig: Rig, tenant: Tenant, caller: str) -> None:
    """Both channels answer 429: the caller gets 429 with the last upstream's Retry-After; until
    the sooner of the two blocks ends, the gateway answers 429 itself, with the time left."""
    rig.a.enqueue(Script(status=429, retry_after=30))
    rig.b.enqueue(Script(status=429, retry_after=12))
    r = rig.send(tenant, caller, "duo-oai", stream=True)
    assert_error_body(r, caller, 429)
    assert r.headers["retry-after"] == "12"
    r = rig.send(tenant, caller, "duo-oai", stream=False)
    err = assert_error_body(r, caller, 429)
    assert 10 <= int(r.headers["retry-after"]) <= 12
    assert "rate limited" in err["message"]
    assert len(rig.a.requests) == len(rig.b.requests) == 1
    (rec,) = tenant.records()  # the gateway's own refusal is not a request to any upstream
    assert attempts(rec) == [("a-oai", "http_429"), ("b-ant", "http_429")] and rec.cost_micro == 0
