"""The official SDKs (max_retries=0) against failover, mid-stream failures and refusals, and
stream faults right after the upstream's headers (before any event) through every adapter."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest

from tests.routing.conftest import (
    COST_B, MSGS, TEXT_B, USAGE_A, Rig, Tenant, assert_stream_error, attempts,
)
from tests.support import Script


def _complete(t: Tenant, caller: str, model: str, stream: bool) -> str:
    if caller == "openai":
        if stream:
            return "".join(c.choices[0].delta.content or "" for c in
                           t.oa.chat.completions.create(model=model, messages=MSGS, stream=True) if c.choices)
        return t.oa.chat.completions.create(model=model, messages=MSGS).choices[0].message.content or ""
    if stream:
        with t.an.messages.stream(model=model, max_tokens=50, messages=MSGS) as s:
            return "".join(b.text for b in s.get_final_message().content if b.type == "text")
    return "".join(b.text for b in t.an.messages.create(model=model, max_tokens=50, messages=MSGS).content
                   if b.type == "text")


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
@pytest.mark.parametrize("caller", ["openai", "anthropic"])
@pytest.mark.parametrize("primary", ["oai", "ant"])
def test_sdk_gets_the_backup_answer(rig: Rig, tenant: Tenant, caller: str, stream: bool, primary: str) -> None:
    rig.a.enqueue(Script(status=503, retry_after=5))
    assert _complete(tenant, caller, f"duo-{primary}", stream) == TEXT_B
    rec = tenant.only_record()
    assert rec.cost_micro == COST_B and len(attempts(rec)) == 2


@pytest.mark.parametrize("caller", ["openai", "anthropic"])
def test_sdk_sees_a_mid_stream_failure_as_an_error(rig: Rig, tenant: Tenant, caller: str) -> None:
    rig.a.enqueue(Script(text="one two three four five", usage=USAGE_A, reset_mid_stream=3))
    seen: list[Any] = []
    with pytest.raises((openai.APIError, anthropic.APIStatusError)) as info:
        if caller == "openai":
            for chunk in tenant.oa.chat.completions.create(model="duo-oai", messages=MSGS, stream=True):
                seen.append(chunk)
        else:
            with tenant.an.messages.stream(model="duo-oai", max_tokens=50, messages=MSGS) as s:
                for ev in s:
                    seen.append(ev)
    assert seen, "the answer had started"
    if caller == "anthropic":
        assert info.value.body["error"]["type"] == "api_error"
    rec = tenant.only_record()  # what was relayed before the failure is charged, counted from it
    assert rec.cost_micro > 0 and rec.usage_source.startswith("relayed_"), (rec.cost_micro, rec.usage_source)
    assert not rig.b.requests  # never retried after the first byte


@pytest.mark.parametrize("caller", ["openai", "anthropic"])
def test_sdk_error_classes_for_refusals(rig: Rig, tenant: Tenant, caller: str) -> None:
    sdk = openai if caller == "openai" else anthropic
    client: Any = tenant.oa.chat.completions if caller == "openai" else tenant.an.messages
    kw: dict[str, Any] = {"model": "solo-oai", "messages": MSGS}
    if caller == "anthropic":
        kw["max_tokens"] = 20
    rig.a.enqueue(Script(status=429, retry_after=7))
    with pytest.raises(sdk.RateLimitError) as info:
        client.create(**kw)
    assert info.value.response.headers["retry-after"] == "7"
    rig.reset()
    rig.gw.health.failure_threshold = 1
    rig.a.enqueue(Script(status=500))
    with pytest.raises(sdk.InternalServerError):
        client.create(**kw)
    with pytest.raises(sdk.InternalServerError) as info:  # circuit open: 503
        client.create(**kw)
    assert info.value.status_code == 503 and info.value.response.headers["retry-after"]


EDGE = [
    ("reset", dict(reset_mid_stream=0), "upstream_error"),
    ("stall", dict(stall_mid_stream=3, stall_after=0), "timeout"),
    ("truncated", dict(truncated_sse=0), "upstream_error"),
    ("malformed", dict(malformed_json=0), "upstream_error"),
]


@pytest.mark.parametrize("primary", ["oai", "ant"])
@pytest.mark.parametrize("caller", ["openai", "anthropic"])
@pytest.mark.parametrize("fault,fields,rec_status", EDGE, ids=[e[0] for e in EDGE])
def test_stream_fault_before_the_first_event(rig: Rig, tenant: Tenant, fault: str, fields: dict[str, Any],
                                             rec_status: str, caller: str, primary: str) -> None:
    """200 and the event-stream headers went out, then the upstream failed before its first
    event: the stream is still closed by one error event in the caller's protocol."""
    rig.a.enqueue(Script(usage=USAGE_A, **fields))
    r = rig.send(tenant, caller, f"duo-{primary}", True)
    assert r.elapsed < 5
    if fault == "malformed" and caller == "anthropic" and primary == "ant":
        # passthrough relays the broken event (in place of message_start) untouched; the rest
        # completes and is billed by the usage the upstream reported (message_delta's output)
        assert r.events[-1][0] == "message_stop" and isinstance(r.events[0][1], str)
        rec = tenant.only_record()
        assert rec.status == "ok" and rec.output_tokens == USAGE_A.output_tokens and rec.cost_micro > 0
        return
    assert r.status == 200 and r.events, r.text
    errors = [i for i, (n, d) in enumerate(r.events) if n == "error" or (isinstance(d, dict) and "error" in d)]
    assert errors == [len(r.events) - 1], r.text
    if len(r.events) > 1:
        assert_stream_error(r, caller)
    rec = tenant.only_record()
    assert rec.status == rec_status and rec.cost_micro == 0, (rec.status, rec.cost_micro)
    assert not rig.b.requests
