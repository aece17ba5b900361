"""Attempts, deadlines, timeouts, concurrency and size limits per channel (issue 9 §2, §3, §4)."""

from __future__ import annotations

import socket
from typing import Any, Iterator

import pytest

from tests.routing.conftest import (
    COST_A, COST_B, TEXT_A, TEXT_B, USAGE_A, Rig, Tenant, assert_answer, assert_error_body, assert_stream_error,
    attempts, wait_for,
)
from tests.support import Script

LONG = " ".join(f"w{i}" for i in range(40))


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A TCP port whose accept queue is full: a connect to it hangs (SYN dropped) until the
    client's connect timeout, like a firewalled host."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fill = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fill.append(c)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        for c in fill:
            c.close()
        srv.close()


@pytest.mark.parametrize("caller", ["openai", "anthropic"])
def test_connect_timeout_fails_over_and_reads_as_a_connect_error(rig: Rig, tenant: Tenant, blackhole: str,
                                                                 caller: str) -> None:
    rig.tune("a-oai", base_url=blackhole + "/v1", connect_timeout=0.5, first_byte_timeout=3.0)
    r = rig.send(tenant, caller, "duo-oai", stream=True)
    assert r.elapsed < 2.5, r.elapsed
    assert_answer(r, caller, True, TEXT_B)
    r = rig.send(tenant, caller, "solo-oai", stream=False)
    assert r.elapsed < 2.5, r.elapsed
    err = assert_error_body(r, caller, 502)  # a connect failure, not an upstream that was slow to answer
    assert "connect" in err["message"], err
    failover, solo = sorted(tenant.records(), key=lambda rec: rec.created_at)
    assert attempts(failover) == [("a-oai", "connect"), ("b-ant", "ok")]
    assert attempts(solo) == [("a-oai", "connect")]
    assert solo.status == "upstream_error" and solo.cost_micro == 0
    assert failover.cost_micro == COST_B


def test_total_deadline_bounds_the_retries(rig: Rig, tenant: Tenant) -> None:
    """Each attempt alone respects its channel's timeouts; together they respect the request's
    deadline: a retry gets only the time that is left."""
    rig.relay_settings(upstream_total_timeout=2.5)
    rig.tune("a-oai", first_byte_timeout=2.0)
    rig.tune("b-ant", first_byte_timeout=2.0)
    rig.a.enqueue(stall_before_headers=6)
    rig.b.enqueue(stall_before_headers=6)
    r = rig.send(tenant, "openai", "duo-oai", stream=False)
    assert_error_body(r, "openai", 504)
    assert 2.3 < r.elapsed < 3.3, r.elapsed
    rec = tenant.only_record()
    assert rec.status == "timeout" and rec.cost_micro == 0
    assert attempts(rec) == [("a-oai", "first_byte_timeout"), ("b-ant", "first_byte_timeout")]


def test_max_attempts_bounds_the_failover(rig: Rig, tenant: Tenant) -> None:
    rig.relay_settings(max_attempts=1)
    rig.a.enqueue(status=500)
    assert_error_body(rig.send(tenant, "anthropic", "duo-oai", stream=True), "anthropic", 502)
    assert len(rig.b.requests) == 0
    assert attempts(tenant.only_record()) == [("a-oai", "http_500")]


@pytest.mark.parametrize("caller", ["openai", "anthropic"])
def test_every_channel_fails(rig: Rig, tenant: Tenant, caller: str) -> None:
    rig.a.enqueue(status=500)
    rig.b.enqueue(status=503, error_message="backup is down too")
    r = rig.send(tenant, caller, "duo-ant", stream=True)
    err = assert_error_body(r, caller, 502)
    assert "backup is down too" in err["message"]  # the last attempt's reason
    rec = tenant.only_record()
    assert rec.status == "upstream_error" and rec.cost_micro == 0
    assert attempts(rec) == [("a-ant", "http_500"), ("b-oai", "http_503")]
    assert rig.state("a-ant").consecutive_failures == rig.state("b-oai").consecutive_failures == 1


def test_failed_request_record_names_the_channel(rig: Rig, tenant: Tenant) -> None:
    """A request that failed at its upstream before the answer started still records which
    channel (and protocol) it failed on: per-channel error rates are computed from records."""
    rig.a.enqueue(status=500)
    assert rig.send(tenant, "openai", "solo-ant", stream=False).status == 502
    rec = tenant.only_record()
    assert (rec.channel, rec.upstream_protocol, rec.status) == ("a-ant", "anthropic", "upstream_error")


@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_not_retried(rig: Rig, tenant: Tenant, status: int) -> None:
    rig.a.enqueue(status=status, error_message="the upstream says no")
    r = rig.send(tenant, "openai", "duo-oai", stream=False)
    err = assert_error_body(r, "openai", status)
    assert "the upstream says no" in err["message"]
    assert len(rig.b.requests) == 0
    assert rig.state("a-oai").consecutive_failures == 0  # the caller's fault, not the channel's
    assert attempts(tenant.only_record()) == [("a-oai", f"http_{status}")]


def _hold(rig: Rig, t: Tenant, model: str, seconds: float) -> Any:
    """Start a stream that occupies a slot of channel a-oai for ``seconds`` then completes."""
    rig.a.enqueue(Script(text=TEXT_A, usage=USAGE_A, stall_mid_stream=seconds, stall_after=2))
    return rig.background(rig.send, t, "openai", model, True)


def test_concurrency_limit_and_queue(rig: Rig, tenant: Tenant) -> None:
    """max_concurrency 1 + max_queue 1: one request in flight, one waits, the next is refused
    (429 for OpenAI callers, 529 overloaded for Anthropic callers) or fails over when the model
    has another channel."""
    rig.tune("a-oai", max_concurrency=1, max_queue=1, idle_timeout=5.0)
    st = rig.state("a-oai")
    holder = _hold(rig, tenant, "solo-oai", 1.5)
    wait_for(lambda: st.in_flight == 1, 5, "the first stream to take the slot")
    queued = rig.background(rig.send, tenant, "anthropic", "solo-oai", False)
    wait_for(lambda: len(st.waiters) == 1, 5, "the second request to queue")

    r = rig.send(tenant, "openai", "solo-oai", stream=True)
    assert_error_body(r, "openai", 429)
    assert r.headers.get("retry-after")
    r = rig.send(tenant, "anthropic", "solo-oai", stream=False)
    err = assert_error_body(r, "anthropic", 529)
    assert err["type"] == "overloaded_error"
    r = rig.send(tenant, "anthropic", "duo-oai", stream=True)
    assert_answer(r, "anthropic", True, TEXT_B)
    assert r.elapsed < 1.0, r.elapsed  # did not wait for the busy channel

    assert_answer(holder.result(10), "openai", True, TEXT_A)
    assert_answer(queued.result(10), "anthropic", False, TEXT_A)
    recs = tenant.records()
    outcomes = sorted((tuple(attempts(rec)), rec.status, rec.cost_micro) for rec in recs)
    assert outcomes == sorted([
        ((("a-oai", "ok"),), "ok", COST_A),
        ((("a-oai", "ok"),), "ok", COST_A),
        ((("a-oai", "busy"),), "upstream_error", 0),
        ((("a-oai", "busy"),), "upstream_error", 0),
        ((("a-oai", "busy"), ("b-ant", "ok")), "ok", COST_B),
    ]), outcomes
    assert tenant.balance() == tenant.start_balance - 2 * COST_A - COST_B
    assert st.in_flight == 0 and st.consecutive_failures == 0  # busy is not a failure


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_max_response_size(rig: Rig, tenant: Tenant, stream: bool) -> None:
    rig.tune("a-oai", max_response_bytes=600)
    rig.a.enqueue(Script(text=LONG, usage=USAGE_A, chunk_delay=0.01))  # a few events arrive first
    r = rig.send(tenant, "openai", "solo-oai", stream)
    if stream:
        err = assert_stream_error(r, "openai")
    else:
        err = assert_error_body(r, "openai", 502)
    assert "size limit" in err["message"], err
    rec = tenant.only_record()
    assert rec.status == "upstream_error" and rec.cost_micro == 0
    # the same answer fits without the limit
    rig.tune("a-oai", max_response_bytes=None)
    rig.a.enqueue(Script(text=LONG, usage=USAGE_A))
    assert rig.send(tenant, "openai", "solo-oai", stream).status == 200


@pytest.mark.parametrize("caller", ["openai", "anthropic"])
@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_total_timeout_ends_a_slow_answer(rig: Rig, tenant: Tenant, caller: str, stream: bool) -> None:
    """An upstream that keeps sending, but too slowly, is cut at the channel's total timeout."""
    rig.tune("a-oai", total_timeout=1.2, idle_timeout=5.0)
    rig.a.enqueue(Script(text=LONG, usage=USAGE_A, chunk_delay=0.1) if stream
                  else Script(text=LONG, usage=USAGE_A, stall_mid_stream=4))
    r = rig.send(tenant, caller, "solo-oai", stream)
    assert r.elapsed < 2.5, r.elapsed
    if stream:
        err = assert_stream_error(r, caller)
        assert err["type"] == ("timeout" if caller == "openai" else "timeout_error"), err
    else:
        assert_error_body(r, caller, 504)
    rec = tenant.only_record()
    assert rec.status == "timeout"
    # the part relayed before the deadline is charged (counted from it); a JSON error charges nothing
    assert rec.cost_micro == 0 if not stream else (rec.cost_micro > 0) == rec.usage_source.startswith("relayed_")
    assert rig.a.wait_until(lambda u: u.client_disconnects == 1, 5)


AUDIO_MSGS = [{"role": "user", "content": [
    {"type": "text", "text": "What is this?"},
    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
]}]  # fine for an OpenAI upstream; Anthropic Messages has no audio input to translate it to


def _audio_request(rig: Rig, t: Tenant, model: str) -> Any:
    return rig._http.post(rig.url + "/v1/chat/completions", headers={"authorization": f"Bearer {t.key}"},
                          json={"model": model, "messages": AUDIO_MSGS})


def test_failover_skips_a_channel_that_cannot_take_the_request(rig: Rig, tenant: Tenant) -> None:
    """The backup speaks the other protocol and cannot carry this request: the caller gets the
    primary's upstream error, not a 400 blaming its (valid) request."""
    rig.a.enqueue(status=503, error_message="primary overloaded")
    r = _audio_request(rig, tenant, "duo-oai")
    assert r.status_code == 502, r.text
    assert "primary overloaded" in r.json()["error"]["message"]
    assert not rig.b.requests
    rec = tenant.only_record()
    assert rec.status == "upstream_error" and rec.cost_micro == 0
    assert attempts(rec) == [("a-oai", "http_503"), ("b-ant", "unsupported")]


def test_a_channel_that_cannot_take_the_request_is_passed_over(rig: Rig, tenant: Tenant) -> None:
    """The preferred channel would need a translation this request does not allow; a lower
    priority channel that speaks the caller's protocol serves it."""
    r = _audio_request(rig, tenant, "duo-ant")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == TEXT_B
    rec = tenant.only_record()
    assert rec.status == "ok" and rec.cost_micro == COST_B
    assert attempts(rec) == [("a-ant", "unsupported"), ("b-oai", "ok")]
    # with no such channel the request is refused as before: 400, nothing recorded
    r = _audio_request(rig, tenant, "solo-ant")
    assert r.status_code == 400 and r.json()["error"]["param"], r.text
    assert len(tenant.records()) == 1


def test_an_unexpected_failure_while_connecting_frees_the_channel_slot(rig: Rig, tenant: Tenant,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug or a cancellation while the upstream is being called must not keep the slot (the
    rig's teardown checks every channel's in_flight and probe flag)."""
    async def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("boom")

    health = rig.gw.health
    health.failure_threshold, health.cooldown = 1, 0.2
    rig.a.enqueue(status=500)
    rig.send(tenant, "openai", "solo-oai", stream=False)
    wait_for(lambda: rig.describe("a-oai") == "half_open", 5, "the cool-down")
    monkeypatch.setattr(rig.gw.pool, "post", broken)
    r = rig.send(tenant, "openai", "solo-oai", stream=False)  # the half-open probe
    monkeypatch.undo()
    assert r.status == 500 and "not charged" in r.json()["error"]["message"]
    st = rig.state("a-oai")
    assert st.in_flight == 0 and not st.probe_in_flight
    wait_for(lambda: rig.describe("a-oai") == "half_open", 5, "the cool-down")
    assert_answer(rig.send(tenant, "openai", "solo-oai", stream=False), "openai", False, TEXT_A)


@pytest.mark.parametrize("caller", ["openai", "anthropic"])
def test_a_channel_whose_request_cannot_be_sent_fails_over(rig: Rig, tenant: Tenant, caller: str) -> None:
    """A channel credential aiohttp refuses to put in a header (a pasted newline) is that
    channel's failure: the backup answers; with one channel the caller gets a 502."""
    rig.tune("a-oai", api_key="sk-upstream\nsecond-line")
    assert_answer(rig.send(tenant, caller, "duo-oai", stream=True), caller, True, TEXT_B)
    r = rig.send(tenant, caller, "solo-oai", stream=False)
    err = assert_error_body(r, caller, 502)
    assert "second-line" not in err["message"] and "sk-upstream" not in err["message"]
    failover, solo = sorted(tenant.records(), key=lambda rec: rec.created_at)
    assert attempts(failover) == [("a-oai", "connect"), ("b-ant", "ok")]
    assert attempts(solo) == [("a-oai", "connect")] and solo.cost_micro == 0
    assert not rig.a.requests


def test_a_busy_channel_is_not_an_attempt(rig: Rig, tenant: Tenant) -> None:
    """max_attempts bounds calls to upstreams; passing over a channel at its concurrency limit
    calls nothing, so it must not use up an attempt (nor may the caller be told that *all*
    channels are busy while one is free)."""
    rig.relay_settings(max_attempts=1)
    rig.tune("a-oai", max_concurrency=1, max_queue=0, idle_timeout=5.0)
    holder = _hold(rig, tenant, "solo-oai", 1.0)
    wait_for(lambda: rig.state("a-oai").in_flight == 1, 5, "the first stream to take the slot")
    assert_answer(rig.send(tenant, "openai", "duo-oai", stream=False), "openai", False, TEXT_B)
    assert_answer(holder.result(10), "openai", True, TEXT_A)
    recs = sorted(tenant.records(), key=lambda rec: rec.created_at)
    assert attempts(recs[1]) == [("a-oai", "busy"), ("b-ant", "ok")]
