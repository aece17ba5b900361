"""Upstream failures, before and after the response started (SPEC §3, §6).

Before the first byte: upstream 4xx → same status with the upstream's message; 401/403 → 502
(the channel's credential, not the caller's); 429 → 429 + Retry-After; 5xx / connect failure /
reset → 502; no answer within first_byte_timeout → 504. After the stream started: an error
event in the caller's protocol, never a clean end. None of these is charged, and every request
is settled exactly once.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.dataplane.conftest import (
    MSGS,
    Tenant,
    assert_error,
    assert_settled_for_relayed,
    assert_settled_uncharged,
    reset_channels,
    wait_for,
)
from tests.support import Script

PROTOCOLS = ["openai", "anthropic"]


def _raw(env: Any, t: Tenant, protocol: str, stream: bool) -> httpx.Response:
    if protocol == "openai":
        path, body = "/v1/chat/completions", {"model": "gpt-test", "messages": MSGS, "stream": stream}
    else:
        path, body = "/v1/messages", {"model": "claude-test", "max_tokens": 20, "messages": MSGS, "stream": stream}
    return httpx.post(env.url + path, json=body, headers={"authorization": f"Bearer {t.key}"}, timeout=30)


def _short_timeouts(env: Any, **kw: float) -> None:
    for ch in ("oai", "ant"):
        env.call(env.services.catalog.update_channel(ch, **kw))


# (id, script, gateway status, record status)
BEFORE_HEADERS = [
    ("upstream_400", Script(status=400, error_message="messages.0.content: too long for this model"), 400,
     "upstream_error"),
    ("upstream_401", Script(status=401, error_message="invalid upstream key"), 502, "upstream_error"),
    ("upstream_403", Script(status=403), 502, "upstream_error"),
    ("upstream_404", Script(status=404, error_message="model gone"), 404, "upstream_error"),
    ("upstream_429", Script(status=429, retry_after=7), 429, "upstream_error"),
    ("upstream_500", Script(status=500), 502, "upstream_error"),
    ("upstream_503_html", Script(status=503, raw_body=b"<html>Service Unavailable</html>"), 502,
     "upstream_error"),
    ("reset_before_headers", Script(reset_before_headers=True), 502, "upstream_error"),
    ("stall_before_headers", Script(stall_before_headers=8), 504, "timeout"),
]


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fault,script,status,rec_status", BEFORE_HEADERS, ids=[c[0] for c in BEFORE_HEADERS])
def test_failure_before_headers(denv, tenant, fault, script, status, rec_status, protocol, stream):
    _short_timeouts(denv, first_byte_timeout=1.0)
    start = tenant.balance()
    denv.upstream.enqueue(script)
    t0 = time.monotonic()
    r = _raw(denv, tenant, protocol, stream)
    elapsed = time.monotonic() - t0
    err = assert_error(r, status, protocol)
    if protocol == "anthropic":
        assert err["type"] == {400: "invalid_request_error", 404: "not_found_error", 429: "rate_limit_error",
                               502: "api_error", 504: "timeout_error"}[status]
    if fault in ("upstream_400", "upstream_404"):
        assert script.error_message in err["message"]  # the upstream's own words reach the caller
    if fault == "upstream_429":
        assert r.headers.get("retry-after") == "7"
    if fault == "upstream_401":
        assert "credential" in err["message"]
    if fault == "stall_before_headers":
        assert elapsed < 5, elapsed  # bounded by first_byte_timeout, not by the stall
        assert denv.upstream.wait_until(lambda u: u.client_disconnects == 1, 5)  # the gateway hung up
    assert len(denv.upstream.requests) == 1
    rec = assert_settled_uncharged(tenant, start)
    assert rec.status == rec_status and rec.http_status == status


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_sdk_exception_classes_before_headers(denv, tenant, protocol):
    cases: list[tuple[Script, Any]] = [
        (Script(status=400, error_message="bad thing"), (openai.BadRequestError, anthropic.BadRequestError)),
        (Script(status=429, retry_after=1), (openai.RateLimitError, anthropic.RateLimitError)),
        (Script(status=500), (openai.InternalServerError, anthropic.InternalServerError)),
        (Script(reset_before_headers=True), (openai.InternalServerError, anthropic.InternalServerError)),
    ]
    for script, (oa_exc, an_exc) in cases:
        denv.upstream.enqueue(script)
        if protocol == "openai":
            with pytest.raises(oa_exc) as ei:
                tenant.oa.chat.completions.create(model="gpt-test", messages=MSGS, stream=True)
        else:
            with pytest.raises(an_exc) as ei:
                with tenant.an.messages.stream(model="claude-test", max_tokens=5, messages=MSGS) as s:
                    s.until_done()
        if script.status == 400:
            assert "bad thing" in str(ei.value)
        # the 429's Retry-After keeps the channel out for a second: let it back in
        reset_channels(denv)
    assert len(tenant.records()) == len(cases)


# ---- after the stream started ----------------------------------------------------------------

MID_STREAM = [
    ("reset", dict(reset_mid_stream=3), "upstream_error"),
    ("stall_idle_timeout", dict(stall_mid_stream=8, stall_after=3), "timeout"),
    ("truncated_sse", dict(truncated_sse=3), "upstream_error"),
    ("error_event", dict(error_event_mid_stream=3, error_message="model overloaded, sorry"), "upstream_error"),
]
# An OpenAI passthrough parses every chunk, so a malformed one becomes the gateway's error
# event; an Anthropic passthrough does not parse content_block_delta (by design: cheap usage
# capture), so a malformed delta is relayed as it came (test_anthropic_malformed_delta_...).
MID_STREAM_PARAMS = [pytest.param(*c, p, id=f"{c[0]}-{p}") for c in MID_STREAM for p in PROTOCOLS] + [
    pytest.param("malformed_json", dict(malformed_json=3), "upstream_error", "openai", id="malformed_json-openai")]


def _stream_with_sdk(t: Tenant, protocol: str) -> tuple[list[Any], BaseException | None]:
    seen: list[Any] = []
    try:
        if protocol == "openai":
            for chunk in t.oa.chat.completions.create(model="gpt-test", messages=MSGS, stream=True):
                seen.append(chunk)
        else:
            with t.an.messages.stream(model="claude-test", max_tokens=50, messages=MSGS) as s:
                for ev in s:
                    seen.append(ev)
    except Exception as exc:  # noqa: BLE001 - inspected by the caller
        return seen, exc
    return seen, None


@pytest.mark.parametrize("fault,fields,rec_status,protocol", MID_STREAM_PARAMS)
def test_failure_mid_stream_reaches_the_client_as_an_error(denv, tenant, fault, fields, rec_status, protocol):
    _short_timeouts(denv, idle_timeout=1.0)
    start = tenant.balance()
    denv.upstream.enqueue(Script(text="one two three four five six seven", **fields))
    t0 = time.monotonic()
    seen, exc = _stream_with_sdk(tenant, protocol)
    assert time.monotonic() - t0 < 6
    assert seen, "the stream should have started before the fault"
    assert exc is not None, f"{fault}: the SDK saw a clean end of a broken stream"
    if protocol == "openai":
        assert isinstance(exc, openai.APIError), repr(exc)
    else:
        assert isinstance(exc, anthropic.APIStatusError), repr(exc)
        assert exc.body["type"] == "error"
        assert exc.body["error"]["type"] in ("api_error", "timeout_error", "overloaded_error")
    if fault == "error_event":
        assert "model overloaded, sorry" in str(exc)
    rec = assert_settled_for_relayed(tenant, start)
    assert rec.status == rec_status, (rec.status, rec.error_type)
    if fault == "stall_idle_timeout":
        assert denv.upstream.wait_until(lambda u: u.client_disconnects == 1, 5)


@pytest.mark.parametrize("fault,fields,rec_status,protocol", MID_STREAM_PARAMS)
def test_mid_stream_failure_wire_format(denv, tenant, fault, fields, rec_status, protocol):
    """Raw bytes: whatever arrived is followed by exactly one terminal error event in the
    caller's protocol, and nothing after it (no [DONE] / message_stop)."""
    _short_timeouts(denv, idle_timeout=1.0)
    denv.upstream.enqueue(Script(text="one two three four five six seven", **fields))
    r = _raw(denv, tenant, protocol, True)
    assert r.status_code == 200
    events = [e for e in r.text.split("\n\n") if e.strip()]
    last = events[-1]
    if protocol == "openai":
        assert last.startswith('data: {"error":'), last
        assert "[DONE]" not in r.text
    else:
        assert last.startswith("event: error\ndata: "), last
        assert "event: message_stop" not in r.text
    assert sum(1 for e in events if '"error"' in e.split("\n")[-1][:20] or e.startswith("event: error")) == 1
    assert r.text.endswith("\n\n")
    rec = tenant.only_record()
    assert rec.status == rec_status
    assert rec.cost_micro == 0 if rec.output_tokens == 0 else rec.usage_source.startswith("relayed_")


def test_anthropic_malformed_delta_is_relayed_not_swallowed(denv, tenant):
    """Passthrough: the upstream's broken delta reaches the client, whose SDK fails on it (not a
    clean end); the upstream completed its stream and reported usage, so that usage is billed."""
    denv.upstream.enqueue(Script(text="one two three four", malformed_json=3))
    seen, exc = _stream_with_sdk(tenant, "anthropic")
    assert seen and isinstance(exc, ValueError), repr(exc)  # json.JSONDecodeError
    rec = tenant.only_record()
    assert rec.status == "ok" and rec.usage_source == "upstream"


NONSTREAM_BODY_FAULTS = [
    ("reset", dict(reset_mid_stream=True), 502),
    ("stall_idle_timeout", dict(stall_mid_stream=8), 504),
    ("truncated", dict(truncated_sse=True), 502),
    ("malformed_json", dict(malformed_json=True), 502),
    ("not_an_object", dict(raw_body=b"[1, 2, 3]"), 502),
]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("fault,fields,status", NONSTREAM_BODY_FAULTS, ids=[c[0] for c in NONSTREAM_BODY_FAULTS])
def test_nonstream_body_failure(denv, tenant, fault, fields, status, protocol):
    _short_timeouts(denv, idle_timeout=1.0)
    start = tenant.balance()
    denv.upstream.enqueue(Script(**fields))
    t0 = time.monotonic()
    r = _raw(denv, tenant, protocol, False)
    assert time.monotonic() - t0 < 6
    assert_error(r, status, protocol)
    rec = assert_settled_uncharged(tenant, start)
    assert rec.status == ("timeout" if status == 504 else "upstream_error")


def test_connect_failure_is_502(denv, tenant):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    denv.call(denv.services.catalog.update_channel("oai", base_url=dead + "/v1"))
    denv.call(denv.services.catalog.update_channel("ant", base_url=dead))
    try:
        for protocol in PROTOCOLS:
            assert_error(_raw(denv, tenant, protocol, True), 502, protocol)
    finally:
        denv.call(denv.services.catalog.update_channel("oai", base_url=denv.upstream.openai_base))
        denv.call(denv.services.catalog.update_channel("ant", base_url=denv.upstream.anthropic_base))
    recs = tenant.records()
    assert len(recs) == 2 and all(r.status == "upstream_error" and r.cost_micro == 0 for r in recs)


def test_gateway_recovers_after_failures(denv, tenant):
    """After a burst of failures below the breaker's threshold, requests succeed again."""
    for _ in range(3):
        denv.upstream.enqueue(Script(status=500))
        assert _raw(denv, tenant, "openai", False).status_code == 502
    assert tenant.oa.chat.completions.create(model="gpt-test", messages=MSGS).choices[0].message.content
    assert httpx.get(denv.url + "/readyz").status_code == 200


def _chunk(content: str) -> str:
    return ('data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
            '"choices":[{"index":0,"delta":{"content":"' + content + '"},"finish_reason":null}]}\n\n')


def test_good_events_sharing_a_read_with_a_malformed_one_are_relayed(denv, tenant):
    """The events before a malformed one reach the client even when all arrive in one read."""
    bad = 'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"cont\n\n'
    denv.upstream.enqueue(Script(raw_frames=[_chunk("first") + _chunk("second") + bad + _chunk("never")]))
    r = _raw(denv, tenant, "openai", True)
    assert r.status_code == 200
    assert r.text.startswith(_chunk("first") + _chunk("second") + 'data: {"error":'), r.text
    assert "never" not in r.text
    assert tenant.only_record().status == "upstream_error"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unterminated_half_event_at_the_end_is_not_relayed(denv, tenant, protocol):
    """A body that ends inside an event (no blank line, data cut mid-JSON) must not reach the
    client as an event: SSE discards an unterminated event, and its JSON is broken anyway."""
    if protocol == "openai":
        frames = [_chunk("whole"), _chunk("half")[:60]]
    else:
        start = ('event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
                 '"role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,'
                 '"stop_sequence":null,"usage":{"input_tokens":5,"output_tokens":1}}}\n\n')
        block = ('event: content_block_start\ndata: {"type":"content_block_start","index":0,'
                 '"content_block":{"type":"text","text":""}}\n\n')
        delta = ('event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
                 '"delta":{"type":"text_delta","text":"half"}}\n\n')
        frames = [start, block, delta[:60]]
    denv.upstream.enqueue(Script(raw_frames=frames))
    r = _raw(denv, tenant, protocol, True)
    assert r.status_code == 200
    assert r.text.startswith("".join(frames[:-1])), r.text
    rest = r.text[len("".join(frames[:-1])):]
    assert frames[-1] not in rest, rest
    assert rest.startswith("event: error\n" if protocol == "anthropic" else 'data: {"error":'), rest
    assert tenant.only_record().status == "upstream_error"


def test_last_event_without_its_blank_line_still_completes(denv, tenant):
    """Tolerance: an upstream that ends with 'data: [DONE]' and no blank line is complete."""
    denv.upstream.enqueue(Script(raw_frames=[_chunk("fine"), "data: [DONE]"]))
    chunks = list(tenant.oa.chat.completions.create(model="gpt-test", messages=MSGS, stream=True))
    assert [c.choices[0].delta.content for c in chunks] == ["fine"]
    assert tenant.only_record().status == "ok"


def test_failure_messages_read_well(denv, tenant):
    _short_timeouts(denv, first_byte_timeout=1.0, idle_timeout=1.0)
    denv.upstream.enqueue(Script(stall_before_headers=8))
    msg = assert_error(_raw(denv, tenant, "openai", False), 504, "openai")["message"]
    assert msg.startswith("Upstream did not answer within 1s"), msg
    denv.upstream.enqueue(Script(truncated_sse=2))
    text = _raw(denv, tenant, "anthropic", True).text
    assert "Upstream stream ended" in text and "pstream upstream" not in text.lower(), text
    denv.upstream.enqueue(Script(malformed_json=True))
    msg = assert_error(_raw(denv, tenant, "openai", False), 502, "openai")["message"]
    assert msg.startswith("Upstream error: ") and "upstream upstream" not in msg.lower(), msg


# Well-formed JSON of an unexpected shape: the adapters read the documented shapes, and the
# relay must still end the stream with an error event (not drop the connection mid-body) and
# settle the request as an upstream error.
ODD_SHAPES = [
    pytest.param("openai", [_chunk("ok"), 'data: {"id":"c1","choices":[{"index":0,"delta":"oops"}]}\n\n',
                            _chunk("never"), "data: [DONE]\n\n"], id="openai-delta-is-a-string"),
    pytest.param("openai", [_chunk("ok"), 'data: {"id":"c1","choices":[7]}\n\n', "data: [DONE]\n\n"],
                 id="openai-choice-is-a-number"),
    pytest.param("anthropic", ['event: message_start\ndata: {"type":"message_start","message":"x"}\n\n',
                               'event: message_stop\ndata: {"type":"message_stop"}\n\n'],
                 id="anthropic-message-is-a-string"),
    pytest.param("anthropic", ['event: message_start\ndata: [1, 2]\n\n',
                               'event: message_stop\ndata: {"type":"message_stop"}\n\n'],
                 id="anthropic-event-data-is-a-list"),
]


@pytest.mark.parametrize("protocol,frames", ODD_SHAPES)
def test_stream_event_of_unexpected_shape_is_an_error_event(denv, tenant, protocol, frames):
    start = tenant.balance()
    denv.upstream.enqueue(Script(raw_frames=frames))
    r = _raw(denv, tenant, protocol, True)  # raises if the gateway dropped the connection mid-body
    assert r.status_code == 200
    last = [e for e in r.text.split("\n\n") if e.strip()][-1]
    assert last.startswith('data: {"error":' if protocol == "openai" else "event: error\n"), r.text
    assert "never" not in r.text
    rec = assert_settled_for_relayed(tenant, start)  # "ok" was relayed before the odd event
    assert rec.status == "upstream_error"


@pytest.mark.parametrize("protocol,body", [
    ("openai", {"choices": [5], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}),
    ("openai", {"choices": "nope"}),
    ("anthropic", {"content": [1, "x"], "usage": {"input_tokens": 3, "output_tokens": 2}}),
    ("anthropic", {"content": "text", "usage": "many"}),
])
def test_nonstream_answer_of_unexpected_shape_is_502(denv, tenant, protocol, body):
    start = tenant.balance()
    denv.upstream.enqueue(Script(raw_body=body))
    r = _raw(denv, tenant, protocol, False)
    assert_error(r, 502, protocol)
    rec = assert_settled_uncharged(tenant, start)
    assert rec.status == "upstream_error"


def test_drain_survives_an_event_of_unexpected_shape(denv, tenant):
    """After a client disconnect the relay keeps reading; an odd event then must not lose the
    settlement (the request is settled once, as a client disconnect)."""
    frames = [_chunk(f"w{i}") for i in range(5)] + ['data: {"id":"c1","choices":[7]}\n\n', "data: [DONE]\n\n"]
    denv.upstream.enqueue(Script(raw_frames=frames, chunk_delay=0.05))
    with httpx.Client(timeout=20) as c:
        body = {"model": "gpt-test", "messages": MSGS, "stream": True}
        with c.stream("POST", denv.url + "/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {tenant.key}"}) as r:
            next(r.iter_raw())
    wait_for(lambda: [x.settled_at is not None for x in denv.records(tenant.id)] == [True], 10,
             "the abandoned request to be settled")
    rec = tenant.only_record()
    assert rec.status == "client_disconnect" and rec.cost_micro > 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
def test_output_relayed_before_a_reset_is_charged(denv, tenant, protocol, model):
    """Issue 13: what reached the client before the upstream reset is charged (counted from
    what was relayed), never dropped; nothing relayed, nothing charged."""
    start = tenant.balance()
    words = " ".join(f"w{i}" for i in range(40))
    denv.upstream.enqueue(Script(text=words, reset_mid_stream=12, omit_usage=True))
    path = "/v1/chat/completions" if protocol == "openai" else "/v1/messages"
    body = {"model": model, "messages": MSGS, "stream": True, "max_tokens": 200}
    r = httpx.post(denv.url + path, json=body, headers={"authorization": f"Bearer {tenant.key}"}, timeout=30)
    assert r.status_code == 200 and "w5" in r.text and "w39" not in r.text
    rec = assert_settled_for_relayed(tenant, start)
    assert rec.status == "upstream_error" and rec.output_tokens >= 2 and rec.cost_micro > 0
    assert rec.usage_source.startswith("relayed_")
