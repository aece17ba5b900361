"""The fault matrix for POST /v1/responses: every upstream fault of ``test_fault_matrix`` ×
{stream, non-stream} × {one channel, two channels} × {primary channel speaks Chat Completions,
Anthropic Messages} — the two translation lanes.

What must hold in every cell: an answer (from A when the fault is harmless, from B after a
failover before the first byte) or a clear error in Responses form — a JSON error in the OpenAI
envelope before the stream started, exactly one terminal ``response.failed`` after it (never a
bare ``error`` event, never a silent end, never ``response.completed`` after a failure); the
request settled once, charged for the upstream that answered, or after a failure mid-stream for
exactly the output that reached the client (issue 13); the breaker counted the failure or not;
the gateway quiescent afterwards (the ``rig`` fixture).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from tests.routing.conftest import (
    COST_A,
    COST_B,
    MSGS,
    TEXT_A,
    TEXT_B,
    USAGE_A,
    Reply,
    Rig,
    Tenant,
    attempts,
    parse_sse,
)
from tests.routing.test_fault_matrix import BOUND, FAULTS, Fault
from tests.support import Script
from tests.support.relayed import counted_input_tokens, relayed_output_tokens, relayed_text


def _body(model: str, stream: bool) -> dict[str, Any]:
    return {"model": model, "input": MSGS[0]["content"], "stream": stream}


def send(rig: Rig, t: Tenant, model: str, stream: bool) -> Reply:
    body = _body(model, stream)
    t0 = time.monotonic()
    r = rig._http.post(rig.url + "/v1/responses", json=body, headers={"authorization": f"Bearer {t.key}"},
                       timeout=15)
    reply = Reply(r.status_code, r.headers, r.text, time.monotonic() - t0)
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        reply.events = parse_sse(r.text)
    return reply


def _types(r: Reply) -> list[str]:
    return [d.get("type") for _, d in r.events if isinstance(d, dict)]


def assert_answer(r: Reply, stream: bool, text: str) -> None:
    assert r.status == 200, (r.status, r.text[:500])
    if not stream:
        body = r.json()
        assert body["status"] == "completed", body
        assert body["output"][-1]["content"][0]["text"] == text
        return
    types = _types(r)
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    assert "response.failed" not in types and "error" not in types
    seqs = [d["sequence_number"] for _, d in r.events if isinstance(d, dict)]
    assert seqs == list(range(len(seqs)))
    final = r.events[-1][1]["response"]
    assert final["output"][-1]["content"][0]["text"] == text
    assert set(final["usage"]) >= {"input_tokens", "input_tokens_details", "output_tokens",
                                   "output_tokens_details", "total_tokens"}


def assert_error_body(r: Reply, status: int) -> dict[str, Any]:
    assert r.status == status, (r.status, r.text[:500])
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) >= {"message", "type", "param", "code"}, body
    assert body["error"]["message"]
    return body["error"]


def assert_failed_stream(r: Reply) -> dict[str, Any]:
    assert r.status == 200, (r.status, r.text[:500])
    assert r.text.endswith("\n\n"), r.text[-200:]
    types = _types(r)
    assert types[0] == "response.created", types
    assert types.count("response.failed") == 1 and types[-1] == "response.failed", types[-4:]
    assert "response.completed" not in types and "error" not in types
    assert not any(isinstance(d, str) for _, d in r.events), "nothing unparsed after the failure"
    err = r.events[-1][1]["response"]["error"]
    assert err["code"] == "server_error" and err["message"], err
    return err


@pytest.mark.parametrize("primary", ["oai", "ant"], ids=["chat_lane", "messages_lane"])
@pytest.mark.parametrize("topo", ["solo", "duo"], ids=["one_channel", "two_channels"])
@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_responses_fault(rig: Rig, tenant: Tenant, fault: Fault, stream: bool, topo: str, primary: str) -> None:
    model = f"{topo}-{primary}"
    ch_a = f"a-{primary}"
    ch_b = f"b-{'ant' if primary == 'oai' else 'oai'}"
    rig.a.enqueue(Script(usage=USAGE_A, **fault.script))

    r = send(rig, tenant, model, stream)
    assert r.elapsed < BOUND, f"took {r.elapsed:.1f}s"

    harmless = fault.name == "unknown_event" or (fault.name == "error_event_mid_stream" and not stream)
    failover = fault.pre and topo == "duo"
    if failover:
        assert_answer(r, stream, TEXT_B)
        rec = tenant.only_record()
        assert (rec.status, rec.channel, rec.cost_micro) == ("ok", ch_b, COST_B)
        assert attempts(rec) == [(ch_a, fault.outcome), (ch_b, "ok")]
    elif harmless:
        assert_answer(r, stream, TEXT_A)
        rec = tenant.only_record()
        assert (rec.status, rec.channel, rec.cost_micro) == ("ok", ch_a, COST_A)
    else:
        if fault.pre or not stream:
            err = assert_error_body(r, fault.error_status)
            if fault.error_status == 429:
                assert r.headers.get("retry-after") == "30"
            assert err["type"] in ("api_error", "rate_limit_exceeded"), err
        else:
            assert_failed_stream(r)
        rec = tenant.only_record()
        expected_status = "upstream_error" if (not stream and fault.error_status == 502) else fault.rec_status
        assert (rec.status, rec.channel) == (expected_status, ch_a), (rec.status, rec.error_type)
        text = relayed_text(d for _, d in r.events if isinstance(d, dict)) if stream and not fault.pre else ""
        if text:
            # the output that reached the client before the upstream broke is charged, counted
            # from it (the faults come after two events: the Chat lane's second is text, the
            # Messages lane has only opened its text block), the input the gateway's estimate
            # (the upstream's usage had not come)
            assert primary == "oai", text
            assert rec.usage_source.startswith("relayed_"), rec.usage_source
            out = relayed_output_tokens(rig.gw, ch_a, text)
            inp = counted_input_tokens(_body(model, stream))
            assert (rec.input_tokens, rec.output_tokens, rec.cache_read_tokens) == (inp, out, 0), text
            assert rec.cost_micro == inp * 1 + out * 2 > 0  # $1 / $2 per 1M input / output tokens
        else:
            assert rec.cost_micro == 0 and rec.input_tokens == rec.output_tokens == 0
    assert rec.protocol == "responses"

    assert len(rig.a.requests) == 1
    assert len(rig.b.requests) == (1 if failover else 0)
    sent = orjson.loads(rig.a.requests[0].body)
    assert ("messages" in sent) and ("input" not in sent)  # translated, never the Responses body
    st = rig.state(ch_a)
    assert rig.describe(ch_a) == "closed"
    assert st.consecutive_failures == (1 if fault.counts and not harmless else 0), fault.name
    if fault.name.startswith("stall"):
        assert rig.a.wait_until(lambda u: u.client_disconnects == 1, 5), "the gateway hung up on the stall"
