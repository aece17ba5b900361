"""The scripted fake upstream, exercised with the official openai / anthropic SDKs."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import anthropic
import httpx
import httpx2
import openai
import orjson
import pytest

if str(Path(__file__).resolve().parents[1]) not in sys.path:  # `tests` importable without a rootdir conftest
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support import (  # noqa: E402
    DEFAULT_TEXT,
    RemoteUpstream,
    Script,
    ScriptedUpstream,
    ToolCall,
    Usage,
    estimate_input_tokens,
)

pytestmark = pytest.mark.timeout(60)

MSGS = [{"role": "user", "content": "What is the weather in Paris and in Rome?"}]
TOOLS_OA = [
    {
        "type": "function",
        "function": {"name": n, "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
    }
    for n in ("get_weather", "get_time")
]
TOOLS_AN = [
    {"name": n, "description": n, "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
    for n in ("get_weather", "get_time")
]
TWO_CALLS = [
    ToolCall("get_weather", {"city": "Paris", "unit": "c"}, id="call_a"),
    ToolCall("get_time", {"city": "Rome", "tz": ["Europe/Rome"]}, id="call_b"),
]


@pytest.fixture(scope="module")
def upstream():
    with ScriptedUpstream() as up:
        yield up


@pytest.fixture(autouse=True)
def _fresh(upstream):
    upstream.clear()
    upstream.set_default(None)
    yield
    upstream.set_default(None)


@pytest.fixture
def oa(upstream):
    with openai.OpenAI(base_url=upstream.openai_base, api_key="sk-test-oa", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture
def an(upstream):
    with anthropic.Anthropic(base_url=upstream.anthropic_base, api_key="sk-ant-test", max_retries=0, timeout=10) as c:
        yield c


def oa_create(oa, **kw):
    kw.setdefault("model", "gpt-test")
    kw.setdefault("messages", MSGS)
    return oa.chat.completions.create(**kw)


def an_create(an, **kw):
    kw.setdefault("model", "claude-test")
    kw.setdefault("max_tokens", 256)
    kw.setdefault("messages", MSGS)
    return an.messages.create(**kw)


# --------------------------------------------------------------------------- defaults


def test_openai_non_stream_default(oa, upstream):
    r = oa_create(oa)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion"
    assert r.model == "gpt-test"
    assert r.choices[0].message.content == DEFAULT_TEXT
    assert r.choices[0].message.role == "assistant"
    assert r.choices[0].finish_reason == "stop"
    expected_in = estimate_input_tokens({"messages": MSGS})
    assert r.usage.prompt_tokens == expected_in
    assert r.usage.completion_tokens == len(DEFAULT_TEXT.split())
    assert r.usage.total_tokens == expected_in + len(DEFAULT_TEXT.split())
    assert r.usage.prompt_tokens_details.cached_tokens == 0
    # fast path ids are still unique per response
    assert oa_create(oa).id != r.id


def test_anthropic_non_stream_default(an):
    m = an_create(an, system="be brief")
    assert m.id.startswith("msg_") and m.type == "message" and m.role == "assistant"
    assert m.model == "claude-test"
    assert [b.type for b in m.content] == ["text"] and m.content[0].text == DEFAULT_TEXT
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens == estimate_input_tokens({"system": "be brief", "messages": MSGS})
    assert m.usage.output_tokens == 3
    assert m.usage.cache_read_input_tokens == 0 and m.usage.cache_creation_input_tokens == 0
    assert m._request_id and m._request_id.startswith("req_")


def test_default_text_is_configurable():
    with ScriptedUpstream(default_text="one two three four five") as up:
        c = openai.OpenAI(base_url=up.openai_base, api_key="k", max_retries=0, timeout=5)
        r = oa_create(c)
        assert r.choices[0].message.content == "one two three four five"
        assert r.usage.completion_tokens == 5


def test_openai_stream_without_include_usage(oa):
    chunks = list(oa_create(oa, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    content = [c.choices[0].delta.content for c in chunks[1:] if c.choices and c.choices[0].delta.content]
    assert len(content) >= 3 and "".join(content) == DEFAULT_TEXT
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)


def test_openai_stream_include_usage(oa):
    chunks = list(oa_create(oa, stream=True, stream_options={"include_usage": True}))
    assert chunks[-2].choices[0].finish_reason == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.completion_tokens == 3
    assert last.usage.prompt_tokens == estimate_input_tokens({"messages": MSGS})
    assert all(c.usage is None for c in chunks[:-1])


def test_openai_raw_stream_framing(upstream):
    with httpx.Client(timeout=5) as c:
        r = c.post(upstream.openai_base + "/chat/completions", json={"model": "m", "messages": MSGS, "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["transfer-encoding"] == "chunked"
    events = r.text.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events[:-1])
    assert "event:" not in r.text


def test_anthropic_stream_default(an):
    with an.messages.stream(model="claude-test", max_tokens=100, messages=MSGS) as s:
        events = [e.type for e in s]
        final = s.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert final.content[0].text == DEFAULT_TEXT
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3
    assert final.usage.input_tokens == estimate_input_tokens({"messages": MSGS})


def test_anthropic_raw_stream_grammar(upstream):
    with httpx.Client(timeout=5) as c:
        r = c.post(
            upstream.anthropic_base + "/v1/messages",
            json={"model": "m", "max_tokens": 9, "messages": MSGS, "stream": True},
        )
    names = [line[len("event: ") :] for line in r.text.splitlines() if line.startswith("event: ")]
    datas = [json.loads(line[len("data: ") :]) for line in r.text.splitlines() if line.startswith("data: ")]
    assert len(names) == len(datas)
    assert [d["type"] for d in datas] == names
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    assert datas[0]["message"]["usage"]["output_tokens"] == 1
    assert datas[-2]["usage"] == {"output_tokens": 3}


# --------------------------------------------------------------------------- content


@pytest.mark.parametrize("interleave", [False, True])
def test_openai_stream_helper_parallel_tool_calls(oa, upstream, interleave):
    upstream.enqueue(Script(tool_calls=TWO_CALLS, interleave_tool_args=interleave))
    with oa.chat.completions.stream(model="gpt-test", messages=MSGS, tools=TOOLS_OA) as s:
        for _ in s:
            pass
        final = s.get_final_completion()
    msg = final.choices[0].message
    assert final.choices[0].finish_reason == "tool_calls"
    assert msg.content is None
    assert [(tc.id, tc.function.name) for tc in msg.tool_calls] == [("call_a", "get_weather"), ("call_b", "get_time")]
    assert json.loads(msg.tool_calls[0].function.arguments) == {"city": "Paris", "unit": "c"}
    assert json.loads(msg.tool_calls[1].function.arguments) == {"city": "Rome", "tz": ["Europe/Rome"]}


def test_openai_raw_tool_call_deltas(oa, upstream):
    upstream.enqueue(Script(text="Checking.", tool_calls=TWO_CALLS))
    chunks = list(oa_create(oa, stream=True, tools=TOOLS_OA))
    tool_deltas = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    firsts = [d for d in tool_deltas if d.id]
    assert [(d.index, d.id, d.function.name, d.function.arguments) for d in firsts] == [
        (0, "call_a", "get_weather", ""),
        (1, "call_b", "get_time", ""),
    ]
    fragments = [d for d in tool_deltas if not d.id]
    assert len(fragments) >= 4 and all(d.function.name is None for d in fragments)


def test_openai_non_stream_tool_calls(oa, upstream):
    upstream.enqueue(Script(tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]))
    r = oa_create(oa, tools=TOOLS_OA)
    tc = r.choices[0].message.tool_calls
    assert len(tc) == 1 and tc[0].id.startswith("call_") and tc[0].type == "function"
    assert json.loads(tc[0].function.arguments) == {"city": "Oslo"}
    assert r.choices[0].finish_reason == "tool_calls"


def test_anthropic_stream_helper_thinking_text_and_parallel_tools(an, upstream):
    upstream.enqueue(Script(reasoning="Two cities, two tools.", text="Let me check.", tool_calls=TWO_CALLS, signature="sig-xyz"))
    with an.messages.stream(model="claude-test", max_tokens=500, messages=MSGS, tools=TOOLS_AN) as s:
        for _ in s:
            pass
        final = s.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use", "tool_use"]
    assert final.content[0].thinking == "Two cities, two tools." and final.content[0].signature == "sig-xyz"
    assert final.content[1].text == "Let me check."
    assert final.content[2].id == "call_a" and final.content[2].name == "get_weather"
    assert final.content[2].input == {"city": "Paris", "unit": "c"}
    assert final.content[3].input == {"city": "Rome", "tz": ["Europe/Rome"]}
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == 4 + 3 + len('{"city":"Paris","unit":"c"}') // 4 + len('{"city":"Rome","tz":["Europe/Rome"]}') // 4


def test_anthropic_non_stream_tools_and_thinking(an, upstream):
    upstream.enqueue(Script(reasoning="hmm", tool_calls=[ToolCall("get_time", {"city": "Rome"})]))
    m = an_create(an, tools=TOOLS_AN)
    assert [b.type for b in m.content] == ["thinking", "tool_use"]
    assert m.content[0].signature.startswith("sig_")
    assert m.content[1].id.startswith("toolu_") and m.content[1].input == {"city": "Rome"}
    assert m.stop_reason == "tool_use"


def test_openai_reasoning_content(oa, upstream):
    upstream.enqueue(Script(reasoning="think think", text="answer"))
    r = oa_create(oa)
    assert r.choices[0].message.model_extra["reasoning_content"] == "think think"
    assert r.usage.completion_tokens_details.reasoning_tokens == 2
    assert r.usage.completion_tokens == 3

    upstream.enqueue(Script(reasoning=["a", "b", "c"], text="x", reasoning_field="reasoning"))
    chunks = list(oa_create(oa, stream=True))
    reasoning = [c.choices[0].delta.model_extra.get("reasoning") for c in chunks if c.choices]
    assert [x for x in reasoning if x] == ["a", "b", "c"]


def test_explicit_text_chunks_and_stop_mapping(oa, an, upstream):
    upstream.enqueue(Script(text=["héllo ", "wör", "ld"], finish_reason="length"))
    chunks = list(oa_create(oa, stream=True))
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["héllo ", "wör", "ld"]
    assert chunks[-1].choices[0].finish_reason == "length"
    upstream.enqueue(Script(finish_reason="length"))
    assert an_create(an).stop_reason == "max_tokens"
    upstream.enqueue(Script(stop_reason="stop_sequence", stop_sequence="END"))
    m = an_create(an)
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == "END"


def test_usage_override_both_protocols(oa, an, upstream):
    u = Usage(input_tokens=100, output_tokens=7, cache_read_tokens=50, cache_write_tokens=10)
    upstream.enqueue(Script(usage=u))
    r = oa_create(oa)
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (160, 7, 167)
    assert r.usage.prompt_tokens_details.cached_tokens == 50
    upstream.enqueue(Script(usage=u))
    with an.messages.stream(model="c", max_tokens=5, messages=MSGS) as s:
        final = s.get_final_message()
    assert final.usage.input_tokens == 100 and final.usage.output_tokens == 7
    assert final.usage.cache_read_input_tokens == 50 and final.usage.cache_creation_input_tokens == 10
    upstream.enqueue(Script(usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}))  # verbatim
    assert oa_create(oa).usage.model_dump(exclude_none=True) == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}


def test_omit_usage(oa, an, upstream):
    upstream.enqueue(Script(omit_usage=True))
    chunks = list(oa_create(oa, stream=True, stream_options={"include_usage": True}))
    assert all(c.choices and c.usage is None for c in chunks)
    upstream.enqueue(Script(omit_usage=True))
    assert oa_create(oa).usage is None


def test_response_model_override(oa, upstream):
    upstream.enqueue(Script(response_model="gpt-4o-2024-08-06"))
    assert oa_create(oa, model="gpt-4o").model == "gpt-4o-2024-08-06"


# --------------------------------------------------------------------------- faults


def test_429_rate_limit_with_retry_after(oa, an, upstream):
    upstream.enqueue(Script(status=429, retry_after=7))
    with pytest.raises(openai.RateLimitError) as ei:
        oa_create(oa)
    assert ei.value.status_code == 429
    assert ei.value.response.headers["retry-after"] == "7"
    assert ei.value.code == "rate_limit_exceeded"
    upstream.enqueue(Script(status=429, retry_after="2"))
    with pytest.raises(anthropic.RateLimitError) as ea:
        an_create(an)
    assert ea.value.response.headers["retry-after"] == "2"
    assert ea.value.body["error"]["type"] == "rate_limit_error"
    assert ea.value.body["type"] == "error" and ea.value.body["request_id"].startswith("req_")


@pytest.mark.parametrize(
    "status,oa_exc,an_exc",
    [
        (400, openai.BadRequestError, anthropic.BadRequestError),
        (401, openai.AuthenticationError, anthropic.AuthenticationError),
        (403, openai.PermissionDeniedError, anthropic.PermissionDeniedError),
        (404, openai.NotFoundError, anthropic.NotFoundError),
        (500, openai.InternalServerError, anthropic.InternalServerError),
        (502, openai.InternalServerError, anthropic.InternalServerError),
        (503, openai.InternalServerError, anthropic.InternalServerError),
        (529, openai.InternalServerError, anthropic.OverloadedError),
    ],
)
def test_error_statuses(oa, an, upstream, status, oa_exc, an_exc):
    upstream.enqueue(Script(status=status))
    with pytest.raises(oa_exc) as ei:
        oa_create(oa, stream=True)
    assert ei.value.status_code == status
    assert set(ei.value.body) == {"message", "type", "param", "code"}
    upstream.enqueue(Script(status=status, error_message="custom words"))
    with pytest.raises(an_exc) as ea:
        an_create(an)
    assert ea.value.body["error"]["message"] == "custom words"


def test_reset_before_headers(oa, an, upstream):
    upstream.enqueue(Script(reset_before_headers=True))
    with pytest.raises(openai.APIConnectionError):
        oa_create(oa)
    upstream.enqueue(Script(reset_before_headers=True))
    with pytest.raises(anthropic.APIConnectionError):
        an_create(an, stream=True)
    assert [r.outcome for r in upstream.requests] == ["reset", "reset"]


def test_reset_mid_stream(oa, an, upstream):
    upstream.enqueue(Script(reset_mid_stream=2))
    got = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in oa_create(oa, stream=True):
            got.append(chunk)
    assert len(got) == 2
    upstream.enqueue(Script(reset_mid_stream=3))
    events = []
    # NB: unlike openai, the anthropic SDK does not wrap errors raised while
    # iterating a stream: the raw httpx2 exception escapes.
    with pytest.raises((anthropic.APIConnectionError, httpx2.ReadError, httpx2.RemoteProtocolError)):
        with an.messages.stream(model="c", max_tokens=5, messages=MSGS) as s:
            for e in s:
                events.append(e.type)
    assert events[:1] == ["message_start"]
    upstream.enqueue(Script(reset_mid_stream=True))  # non-stream: headers + half a body
    with pytest.raises(openai.APIConnectionError):
        oa_create(oa)


def test_stall_before_headers_times_out_and_is_seen_as_disconnect(upstream):
    upstream.enqueue(Script(stall_before_headers=5))
    c = openai.OpenAI(base_url=upstream.openai_base, api_key="k", max_retries=0, timeout=0.3)
    t0 = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        oa_create(c)
    assert time.monotonic() - t0 < 3
    c.close()
    assert upstream.wait_until(lambda u: u.client_disconnects == 1)
    assert upstream.requests[0].client_disconnected
    assert upstream.wait_until(lambda u: u.open_connections == 0)


def test_stall_mid_stream(upstream):
    upstream.enqueue(Script(stall_mid_stream=5, stall_after=2))
    c = anthropic.Anthropic(base_url=upstream.anthropic_base, api_key="k", max_retries=0, timeout=0.5)
    seen = []
    with pytest.raises((anthropic.APITimeoutError, httpx2.ReadTimeout)):  # raw httpx2 error mid-stream
        with c.messages.stream(model="c", max_tokens=5, messages=MSGS) as s:
            for e in s:
                seen.append(e.type)
    assert seen[0] == "message_start"
    c.close()
    assert upstream.wait_until(lambda u: u.client_disconnects == 1)


def test_stall_mid_stream_then_completes(oa, upstream):
    upstream.enqueue(Script(stall_mid_stream=0.2, stall_after=1))
    t0 = time.monotonic()
    chunks = list(oa_create(oa, stream=True))
    assert time.monotonic() - t0 >= 0.2
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_malformed_json(oa, an, upstream):
    upstream.enqueue(Script(malformed_json=True))
    with pytest.raises((openai.APIResponseValidationError, json.JSONDecodeError, ValueError)):
        oa_create(oa)
    upstream.enqueue(Script(malformed_json=2))
    with pytest.raises(json.JSONDecodeError):
        list(oa_create(oa, stream=True))
    upstream.enqueue(Script(malformed_json=3))
    with pytest.raises(json.JSONDecodeError):
        with an.messages.stream(model="c", max_tokens=5, messages=MSGS) as s:
            for _ in s:
                pass


def test_truncated_sse(oa, an, upstream):
    upstream.enqueue(Script(truncated_sse=3))
    chunks = list(oa_create(oa, stream=True))  # the SDK silently stops: no [DONE], no finish_reason
    assert len(chunks) == 3
    assert all(c.choices[0].finish_reason is None for c in chunks)
    assert upstream.requests[-1].outcome == "truncated"
    upstream.enqueue(Script(truncated_sse=4))
    with an.messages.stream(model="c", max_tokens=5, messages=MSGS) as s:
        types = [e.type for e in s]
    assert "message_stop" not in types and "message_delta" not in types
    # the connection stays usable (clean end of the chunked body)
    assert oa_create(oa).choices[0].message.content == DEFAULT_TEXT


def test_unknown_events_are_tolerated(oa, an, upstream):
    upstream.enqueue(Script(unknown_event=1, text="fine"))
    with oa.chat.completions.stream(model="m", messages=MSGS) as s:
        for _ in s:
            pass
        assert s.get_final_completion().choices[0].message.content == "fine"
    upstream.enqueue(Script(unknown_event=1, text="fine too"))
    with an.messages.stream(model="c", max_tokens=5, messages=MSGS) as s:
        for _ in s:
            pass
        assert s.get_final_message().content[0].text == "fine too"
    upstream.enqueue(Script(unknown_event=1))
    with httpx.Client(timeout=5) as c:
        body = {"model": "m", "max_tokens": 5, "messages": MSGS, "stream": True}
        text = c.post(upstream.anthropic_base + "/v1/messages", json=body).text
    assert text.split("\n\n")[1].startswith("event: future_thing\n")


def test_error_event_mid_stream(oa, an, upstream):
    upstream.enqueue(Script(error_event_mid_stream=2, error_message="boom"))
    got = []
    with pytest.raises(openai.APIError) as ei:
        for chunk in oa_create(oa, stream=True):
            got.append(chunk)
    assert len(got) == 2 and ei.value.message == "boom"
    upstream.enqueue(Script(error_event_mid_stream=3))
    with pytest.raises(anthropic.APIStatusError) as ea:
        with an.messages.stream(model="c", max_tokens=5, messages=MSGS) as s:
            for _ in s:
                pass
    assert ea.value.status_code == 200
    assert ea.value.body["error"]["type"] == "overloaded_error"


def test_fragmented_frames_and_chunk_delay(oa, an, upstream):
    upstream.enqueue(Script(fragment_frames=True, tool_calls=TWO_CALLS, text="a b"))
    with oa.chat.completions.stream(model="m", messages=MSGS, tools=TOOLS_OA) as s:
        final = s.get_final_completion()
    assert len(final.choices[0].message.tool_calls) == 2
    upstream.enqueue(Script(chunk_delay=0.02, fragment_frames=True))
    t0 = time.monotonic()
    with an.messages.stream(model="c", max_tokens=5, messages=MSGS) as s:
        assert s.get_final_text() == DEFAULT_TEXT
    assert time.monotonic() - t0 >= 0.02 * 8


def test_raw_frames_and_raw_body(oa, upstream):
    frames = [
        'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"raw"},"finish_reason":"stop"}]}\n\n',
        "data: [DONE]\n\n",
    ]
    upstream.enqueue(Script(raw_frames=frames))
    chunks = list(oa_create(oa, stream=True))
    assert len(chunks) == 1 and chunks[0].choices[0].delta.content == "raw"
    upstream.enqueue(Script(raw_body={"error": {"message": "weird", "type": "x", "param": None, "code": None}}, status=418))
    with pytest.raises(openai.APIStatusError) as ei:
        oa_create(oa)
    assert ei.value.status_code == 418 and ei.value.message.endswith("weird")


# --------------------------------------------------------------------------- queueing


def test_model_keyed_queue_has_priority(oa, upstream):
    upstream.enqueue(Script(text="shared one"))
    upstream.enqueue(Script(text="for m2"), model="m2")
    upstream.enqueue(Script(text="shared two"))
    assert oa_create(oa, model="m2").choices[0].message.content == "for m2"
    assert oa_create(oa, model="m2").choices[0].message.content == "shared one"
    assert oa_create(oa, model="m1").choices[0].message.content == "shared two"
    assert oa_create(oa, model="m1").choices[0].message.content == DEFAULT_TEXT
    assert upstream.pending_scripts == 0


def test_filters_match_endpoint_and_repeat(oa, an, upstream):
    upstream.enqueue(Script(text="anthropic only", endpoint="messages"))
    upstream.enqueue(Script(text="model filter", model="special"))
    upstream.enqueue(Script(text="has tools", match=lambda r: bool(r.json.get("tools"))))
    upstream.enqueue(Script(status=503, repeat=2))
    assert oa_create(oa, model="special").choices[0].message.content == "model filter"
    assert oa_create(oa, tools=TOOLS_OA).choices[0].message.content == "has tools"
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            oa_create(oa)
    assert oa_create(oa).choices[0].message.content == DEFAULT_TEXT
    assert an_create(an).content[0].text == "anthropic only"


def test_set_default_applies_to_unscripted_requests(oa, upstream):
    upstream.set_default(Script(text="slow default", chunk_delay=0.001))
    assert oa_create(oa).choices[0].message.content == "slow default"
    upstream.set_default(None)
    assert oa_create(oa).choices[0].message.content == DEFAULT_TEXT


def test_enqueue_keyword_shorthand(oa, upstream):
    upstream.enqueue(status=500)
    with pytest.raises(openai.InternalServerError):
        oa_create(oa)


# --------------------------------------------------------------------------- other endpoints


def test_count_tokens_matches_message_input_tokens(an, upstream):
    kw = dict(model="claude-test", messages=MSGS, system="sys prompt", tools=TOOLS_AN)
    counted = an.messages.count_tokens(**kw)
    assert counted.input_tokens == estimate_input_tokens({"messages": MSGS, "system": "sys prompt", "tools": TOOLS_AN})
    assert an_create(an, **kw).usage.input_tokens == counted.input_tokens
    upstream.enqueue(Script(endpoint="count_tokens", usage=Usage(input_tokens=4242)))
    assert an.messages.count_tokens(**kw).input_tokens == 4242
    upstream.enqueue(Script(endpoint="count_tokens", status=404))
    with pytest.raises(anthropic.NotFoundError):
        an.messages.count_tokens(**kw)


def test_models_list_in_both_shapes(oa, an):
    assert [m.id for m in oa.models.list()] == ["gpt-4o-mini", "claude-sonnet-4-5"]
    page = an.models.list()
    assert [m.id for m in page.data] == ["gpt-4o-mini", "claude-sonnet-4-5"]
    assert page.data[0].type == "model"


def test_unknown_path_is_404(upstream):
    with httpx.Client(timeout=5) as c:
        r = c.post(upstream.url + "/v1/nope", json={})
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def test_embeddings(oa):
    r = oa.embeddings.create(model="emb", input=["a", "b"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 8
    assert r.data[0].embedding != r.data[1].embedding


def test_require_api_key():
    with ScriptedUpstream(require_api_key="right") as up:
        bad = openai.OpenAI(base_url=up.openai_base, api_key="wrong", max_retries=0, timeout=5)
        with pytest.raises(openai.AuthenticationError):
            oa_create(bad)
        good_an = anthropic.Anthropic(base_url=up.anthropic_base, api_key="right", max_retries=0, timeout=5)
        assert an_create(good_an).content[0].text == DEFAULT_TEXT
        bad_an = anthropic.Anthropic(base_url=up.anthropic_base, api_key="nope", max_retries=0, timeout=5)
        with pytest.raises(anthropic.AuthenticationError):
            an_create(bad_an)


# --------------------------------------------------------------------------- recording & connections


def test_recording_headers_and_bodies(oa, an, upstream):
    oa_create(oa, temperature=0.5, extra_headers={"X-Trace": "abc"})
    an.messages.create(
        model="claude-test", max_tokens=11, messages=MSGS, extra_query={"beta": "true"}, extra_headers={"anthropic-beta": "b1"}
    )
    first, second = upstream.requests
    assert first.method == "POST" and first.path == "/v1/chat/completions" and first.endpoint == "chat"
    assert first.headers["authorization"] == "Bearer sk-test-oa"
    assert first.headers["x-trace"] == "abc"
    assert first.json == {"model": "gpt-test", "messages": MSGS, "temperature": 0.5}
    assert first.model == "gpt-test" and first.stream is False and first.completed
    assert second.path == "/v1/messages" and second.query == "beta=true" and second.query_params == {"beta": "true"}
    # anthropic SDK 2.x sends api_key as a Bearer token, not x-api-key
    assert second.headers["authorization"] == "Bearer sk-ant-test" or second.headers["x-api-key"] == "sk-ant-test"
    assert second.headers["anthropic-version"] and second.headers["anthropic-beta"] == "b1"
    assert second.json["max_tokens"] == 11
    assert all(k == k.lower() for k in second.headers)
    assert first.time <= second.time <= time.time()
    assert upstream.last_request is second


def test_keep_alive_one_connection_for_sequential_requests(upstream):
    with httpx.Client(timeout=5) as c:
        for _ in range(5):
            assert c.post(upstream.openai_base + "/chat/completions", json={"model": "m", "messages": MSGS}).status_code == 200
            assert c.post(upstream.anthropic_base + "/v1/messages", json={"model": "m", "messages": MSGS, "stream": True}).status_code == 200
        assert upstream.total_connections == 1 and upstream.open_connections == 1
    assert upstream.wait_until(lambda u: u.open_connections == 0)
    assert len(upstream.requests) == 10 and upstream.client_disconnects == 0


def test_sdk_client_reuses_connection(oa, upstream):
    for _ in range(3):
        oa_create(oa)
    assert upstream.total_connections == 1
    # NB: the SYNC openai SDK stops reading at [DONE] and closes the response
    # without consuming the chunked terminator, so each sync stream costs a
    # connection; the async SDK drains the body and keeps it pooled.
    list(oa_create(oa, stream=True))
    assert upstream.wait_until(lambda u: u.open_connections == 0)


async def test_async_sdk_streams_reuse_connection(upstream):
    async with openai.AsyncOpenAI(base_url=upstream.openai_base, api_key="k", max_retries=0, timeout=10) as c:
        for _ in range(3):
            stream = await c.chat.completions.create(model="m", messages=MSGS, stream=True)
            assert [ch async for ch in stream][-1].choices[0].finish_reason == "stop"
            await c.chat.completions.create(model="m", messages=MSGS)
    async with anthropic.AsyncAnthropic(base_url=upstream.anthropic_base, api_key="k", max_retries=0, timeout=10) as c:
        for _ in range(3):
            async with c.messages.stream(model="c", max_tokens=5, messages=MSGS) as s:
                await s.get_final_message()
    assert upstream.total_connections == 2


def test_client_disconnect_mid_stream_is_recorded(upstream):
    upstream.enqueue(Script(chunk_delay=0.05, text="w " * 40))
    with httpx.Client(timeout=5) as c:
        with c.stream("POST", upstream.openai_base + "/chat/completions", json={"model": "m", "messages": MSGS, "stream": True}) as r:
            it = r.iter_raw()
            next(it)
            next(it)
    assert upstream.wait_until(lambda u: u.client_disconnects == 1)
    rec = upstream.requests[0]
    assert rec.client_disconnected and not rec.completed and rec.outcome == "disconnected"
    assert upstream.wait_until(lambda u: u.open_connections == 0)


def test_drop_idle_connections_forces_a_new_connection(upstream):
    with httpx.Client(timeout=5) as c:
        c.post(upstream.openai_base + "/chat/completions", json={"model": "m", "messages": MSGS})
        assert upstream.drop_idle_connections() == 1
        assert upstream.wait_until(lambda u: u.open_connections == 0)
        assert c.post(upstream.openai_base + "/chat/completions", json={"model": "m", "messages": MSGS}).status_code == 200
    assert upstream.total_connections == 2


def test_chunked_request_body(upstream):
    payload = orjson.dumps({"model": "m", "messages": MSGS})

    def gen():
        yield payload[:10]
        yield payload[10:]

    with httpx.Client(timeout=5) as c:
        r = c.post(upstream.openai_base + "/chat/completions", content=gen(), headers={"content-type": "application/json"})
    assert r.status_code == 200
    assert upstream.requests[0].headers["transfer-encoding"] == "chunked"
    assert upstream.requests[0].json["model"] == "m"


async def test_async_clients_and_await_until(upstream):
    upstream.enqueue(Script(tool_calls=TWO_CALLS))
    async with anthropic.AsyncAnthropic(base_url=upstream.anthropic_base, api_key="k", max_retries=0, timeout=10) as c:
        async with c.messages.stream(model="c", max_tokens=5, messages=MSGS, tools=TOOLS_AN) as s:
            final = await s.get_final_message()
    assert [b.name for b in final.content] == ["get_weather", "get_time"]
    async with openai.AsyncOpenAI(base_url=upstream.openai_base, api_key="k", max_retries=0, timeout=10) as c:
        r = await c.chat.completions.create(model="m", messages=MSGS)
    assert r.choices[0].message.content == DEFAULT_TEXT
    assert await upstream.await_until(lambda u: u.open_connections == 0)


# --------------------------------------------------------------------------- control API / process


def test_control_api_in_process(upstream):
    with httpx.Client(base_url=upstream.url, timeout=5) as c:
        assert c.post("/_control/enqueue", json={"script": {"text": "via control"}, "model": "m9"}).status_code == 200
        assert c.post("/_control/enqueue", json={"status": 429, "retry_after": 1}).status_code == 200
        assert c.post("/_control/enqueue", json={"bogus": 1}).status_code == 400
        assert c.get("/_control/stats").json()["pending_scripts"] == 2
        r = c.post("/v1/chat/completions", json={"model": "m9", "messages": MSGS})
        assert r.json()["choices"][0]["message"]["content"] == "via control"
        r = c.post("/v1/chat/completions", json={"model": "m9", "messages": MSGS})
        assert r.status_code == 429 and r.headers["retry-after"] == "1"
        recs = c.get("/_control/requests").json()
        assert [x["json"]["model"] for x in recs] == ["m9", "m9"] and recs[1]["outcome"] == "error_status"
        c.post("/_control/clear")
        assert c.get("/_control/requests").json() == []


def test_script_round_trips_through_dict():
    s = Script(
        text="t",
        tool_calls=[ToolCall("f", {"a": 1}, id="x")],
        usage=Usage(input_tokens=3),
        status=429,
        retry_after=2,
        reset_mid_stream=4,
        raw_frames=[b"data: x\n\n"],
    )
    d = s.to_dict()
    assert orjson.loads(orjson.dumps(d)) == d
    back = Script.from_dict(d)
    assert back.tool_calls == s.tool_calls and back.usage == s.usage and back.reset_mid_stream == 4
    with pytest.raises(ValueError):
        Script(match=lambda r: True).to_dict()


def test_standalone_process_with_remote_client():
    with RemoteUpstream.spawn("--text", "from another process") as remote:
        remote.enqueue(Script(tool_calls=[ToolCall("f", {"x": 1})]), model="mx")
        c = openai.OpenAI(base_url=remote.openai_base, api_key="k", max_retries=0, timeout=10)
        assert c.chat.completions.create(model="m", messages=MSGS).choices[0].message.content == "from another process"
        r = c.chat.completions.create(model="mx", messages=MSGS)
        assert r.choices[0].message.tool_calls[0].function.name == "f"
        remote.enqueue(status=503)
        with pytest.raises(openai.InternalServerError):
            c.chat.completions.create(model="m", messages=MSGS)
        assert [x["outcome"] for x in remote.requests] == ["ok", "ok", "error_status"]
        assert remote.stats()["requests"] == 3
        c.close()


def test_keepalive_timeout_closes_idle_connections():
    with ScriptedUpstream(keepalive_timeout=0.2) as up, httpx.Client(timeout=5) as c:
        c.post(up.openai_base + "/chat/completions", json={"model": "m", "messages": MSGS})
        assert up.open_connections == 1
        assert up.wait_until(lambda u: u.open_connections == 0, timeout=3)
        assert c.post(up.openai_base + "/chat/completions", json={"model": "m", "messages": MSGS}).status_code == 200
        assert up.total_connections == 2


def test_handler_crash_is_reported_not_hung(oa, upstream):
    upstream.enqueue(Script(match=lambda r: r.json["no such key"]))
    with pytest.raises(openai.InternalServerError) as ei:
        oa_create(oa)
    assert "scripted upstream crashed" in str(ei.value)
    assert isinstance(upstream.errors[0], KeyError)
    upstream.clear()
    assert upstream.errors == []


def test_liveness_probe(upstream):
    with httpx.Client(timeout=5) as c:
        assert c.get(upstream.url + "/").text == "ok"
        assert c.head(upstream.url + "/").status_code == 200
