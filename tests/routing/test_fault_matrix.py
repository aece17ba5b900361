"""The fault matrix of issue 9: every upstream fault × {OpenAI, Anthropic caller} × {stream,
non-stream} × {one channel, two channels} × {primary channel speaks OpenAI, Anthropic}.

The fault is scripted on the primary channel (upstream A); the backup (upstream B, the other
protocol) answers normally. What must hold in every cell:

* the client gets, within a bound, either the answer (from A when the fault is harmless, from
  B after a failover) or a clear error in its own protocol — a JSON error before the stream
  started, a terminal stream error event after — never a silent truncation or a hang;
* faults before the upstream's response headers (5xx, 429, reset, stall) fail over to the
  backup; faults after them (the stream or body already started) never do;
* the request is settled once: charged at the model's price for the upstream that answered
  (A and B report different usage), nothing for failed attempts; the record lists the attempts;
* the primary channel's breaker counted the failure (or not, for 429 and harmless faults);
* the gateway is quiescent afterwards (checked by the ``rig`` fixture).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from tests.routing.conftest import (
    COST_A, COST_B, TEXT_A, TEXT_B, USAGE_A, Rig, Tenant, assert_answer, assert_error_body,
    assert_stream_error, attempts,
)
from tests.support import Script

BOUND = 5.0  # seconds: first byte / idle timeouts are 1 s, upstream stalls are 3 s


@dataclass(frozen=True)
class Fault:
    name: str
    script: dict[str, Any]
    pre: bool  # before the upstream's response headers: retried on the next channel
    error_status: int | None  # the JSON error status (pre: one channel; post: non-stream); None = answered
    stream_error: bool  # post faults: the stream ends with an error event
    rec_status: str  # the record's status when the fault reached the client
    counts: bool  # a failure for the breaker
    outcome: str = "ok"  # the attempt's outcome in the record (pre faults)


FAULTS = [
    Fault("http_500", dict(status=500), True, 502, False, "upstream_error", True, "http_500"),
    Fault("http_502", dict(status=502), True, 502, False, "upstream_error", True, "http_502"),
    Fault("http_503", dict(status=503), True, 502, False, "upstream_error", True, "http_503"),
    Fault("http_429_retry_after", dict(status=429, retry_after=30), True, 429, False, "upstream_error", False,
          "http_429"),
    Fault("reset_before_headers", dict(reset_before_headers=True), True, 502, False, "upstream_error", True,
          "reset"),
    Fault("stall_before_headers", dict(stall_before_headers=3), True, 504, False, "timeout", True,
          "first_byte_timeout"),
    Fault("reset_mid_stream", dict(reset_mid_stream=2), False, 502, True, "upstream_error", True),
    Fault("stall_mid_stream", dict(stall_mid_stream=3, stall_after=2), False, 504, True, "timeout", True),
    Fault("malformed_json", dict(malformed_json=2), False, 502, True, "upstream_error", True),
    Fault("truncated_sse", dict(truncated_sse=2), False, 502, True, "upstream_error", True),
    Fault("unknown_event", dict(unknown_event=2), False, None, False, "ok", False),
    Fault("error_event_mid_stream", dict(error_event_mid_stream=2), False, None, True, "upstream_error", False),
]


@pytest.mark.parametrize("primary", ["oai", "ant"], ids=["primary_openai", "primary_anthropic"])
@pytest.mark.parametrize("topo", ["solo", "duo"], ids=["one_channel", "two_channels"])
@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
@pytest.mark.parametrize("caller", ["openai", "anthropic"])
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault(rig: Rig, tenant: Tenant, fault: Fault, caller: str, stream: bool, topo: str, primary: str) -> None:
    model = f"{topo}-{primary}"
    ch_a = f"a-{primary}"
    ch_b = f"b-{'ant' if primary == 'oai' else 'oai'}"
    rig.a.enqueue(Script(usage=USAGE_A, **fault.script))

    r = rig.send(tenant, caller, model, stream)
    assert r.elapsed < BOUND, f"took {r.elapsed:.1f}s"

    # anthropic passthrough relays the upstream's (broken) delta untouched instead of parsing
    # every event (see relay._convert); the upstream finished, reported usage, and is billed
    relayed_raw = fault.name == "malformed_json" and stream and caller == "anthropic" and primary == "ant"
    harmless = fault.name == "unknown_event" or relayed_raw or (fault.name == "error_event_mid_stream" and not stream)
    failover = fault.pre and topo == "duo"

    rec = None
    if failover:
        assert_answer(r, caller, stream, TEXT_B)
        rec = tenant.only_record()
        assert rec.status == "ok" and rec.channel == ch_b, (rec.status, rec.channel)
        assert rec.cost_micro == COST_B, rec.cost_micro  # charged once, for B's answer
        assert attempts(rec) == [(ch_a, fault.outcome), (ch_b, "ok")]
        first = orjson.loads(rec.attempts)[0]["latency_ms"]
        assert (900 <= first < 2500) if fault.name == "stall_before_headers" else (0 <= first < 900), first
    elif harmless:
        if relayed_raw:
            assert r.status == 200 and r.events[-1][0] == "message_stop"
            assert any(isinstance(d, str) and d for _, d in r.events), "the broken event was relayed"
        else:
            assert_answer(r, caller, stream, TEXT_A)
        rec = tenant.only_record()
        assert rec.status == "ok" and rec.channel == ch_a and rec.cost_micro == COST_A, (
            rec.status, rec.channel, rec.cost_micro)
        assert attempts(rec) == [(ch_a, "ok")]
    else:
        if fault.pre or not stream:
            err = assert_error_body(r, caller, fault.error_status)
            if caller == "anthropic":
                assert err["type"] == {429: "rate_limit_error", 502: "api_error", 504: "timeout_error"}[
                    fault.error_status], err
            if fault.error_status == 429:
                assert r.headers.get("retry-after") == "30"
        else:
            assert_stream_error(r, caller)
        rec = tenant.only_record()
        expected_status = "upstream_error" if (not stream and fault.error_status == 502) else fault.rec_status
        assert (rec.status, rec.channel) == (expected_status, ch_a), (rec.status, rec.error_type, rec.channel)
        if stream and not fault.pre and rec.output_tokens:
            # output reached the client before the upstream broke: charged, counted from it
            assert rec.usage_source.startswith("relayed_") and rec.cost_micro > 0, (rec.usage_source, rec.cost_micro)
        else:
            assert rec.cost_micro == 0 and rec.input_tokens == rec.output_tokens == 0
        assert attempts(rec) == [(ch_a, fault.outcome if fault.pre else "ok")]

    # no retry on the same channel; a backup only for faults before the response started
    assert len(rig.a.requests) == 1, [r.path for r in rig.a.requests]
    assert len(rig.b.requests) == (1 if failover else 0)

    # the breaker: one failure counted (threshold 5: still closed), or none
    st = rig.state(ch_a)
    counted = fault.counts and not harmless
    assert rig.describe(ch_a) == "closed"
    assert st.consecutive_failures == (1 if counted else 0), (fault.name, st.consecutive_failures)
    if fault.name == "http_429_retry_after":
        assert 25 < st.blocked_until - time.monotonic() <= 30
    else:
        assert st.blocked_until < time.monotonic()
    if failover:
        assert rig.state(ch_b).consecutive_failures == 0
    if fault.name.startswith("stall"):
        assert rig.a.wait_until(lambda u: u.client_disconnects == 1, 5), "the gateway hung up on the stall"
