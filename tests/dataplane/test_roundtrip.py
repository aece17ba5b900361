"""SDK round trips through the gateway on passthrough channels, both protocols, stream and not.

What must hold (SPEC §5): the request reaches the upstream unchanged except for the model name
and the credentials; the answer comes back untouched apart from usage capture.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.dataplane.conftest import MSGS, Tenant, an_client, oa_client
from tests.support import Script, ToolCall, Usage

PNG_B64 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")

OA_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "description": "Local time",
                                      "parameters": {"type": "object", "properties": {"tz": {"type": "string"}},
                                                     "required": ["tz"]}}},
]
AN_TOOLS = [
    {"name": "get_weather", "description": "Weather for a city",
     "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    {"name": "get_time", "description": "Local time",
     "input_schema": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}},
]
CALLS = [ToolCall("get_weather", {"city": "Paris"}), ToolCall("get_time", {"tz": "Europe/Paris"})]


def assert_credentials(rec: Any, protocol: str, caller_key: str) -> None:
    """Only the channel's credential goes upstream; the caller's key and cookies never do."""
    h = rec.headers
    if protocol == "openai":
        assert h.get("authorization") == "Bearer upstream-oai"
        assert "x-api-key" not in h
    else:
        assert h.get("x-api-key") == "upstream-ant"
        assert h.get("anthropic-version")
        assert "authorization" not in h
    assert "cookie" not in h
    for name, value in h.items():
        assert caller_key not in value, f"caller key forwarded in {name}"
        assert "secret-session" not in value, f"cookie forwarded in {name}"
    assert caller_key.encode() not in rec.body


# ---- OpenAI ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_openai_text_roundtrip(denv, stream):
    t = Tenant(denv)
    oa = oa_client(denv, t.key, default_headers={"Cookie": "sid=secret-session"})
    denv.upstream.enqueue(Script(text="Bonjour tout le monde"))
    extra = {"future_param": {"nested": [1, 2]}, "metadata": {"trace": "abc"}}
    if stream:
        with oa.chat.completions.stream(model="gpt-test", messages=MSGS, extra_body=extra) as s:
            final = s.get_final_completion()
        text = final.choices[0].message.content
    else:
        text = oa.chat.completions.create(model="gpt-test", messages=MSGS, extra_body=extra).choices[0].message.content
    assert text == "Bonjour tout le monde"

    (rec,) = denv.upstream.requests
    assert rec.path == "/v1/chat/completions"
    assert rec.json["model"] == "gpt-4o-mini"  # the channel's own name for the model
    assert rec.json["messages"] == MSGS
    assert rec.json["future_param"] == {"nested": [1, 2]} and rec.json["metadata"] == {"trace": "abc"}
    assert rec.json.get("stream", False) is stream
    assert_credentials(rec, "openai", t.key)

    r = t.only_record()
    assert (r.status, r.protocol, r.upstream_protocol, r.channel, r.stream) == ("ok", "openai", "openai", "oai", stream)
    assert r.usage_source == "upstream" and r.output_tokens == 4 and r.cost_micro > 0
    oa.close()
    t.close()


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_openai_parallel_tool_calls_and_image(denv, tenant, stream):
    denv.upstream.enqueue(Script(tool_calls=CALLS, interleave_tool_args=True))
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "What is in this picture, and what's the weather?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "low"}},
    ]}]
    kw = dict(model="gpt-test", messages=messages, tools=OA_TOOLS, tool_choice="auto", parallel_tool_calls=True)
    if stream:
        with tenant.oa.chat.completions.stream(**kw) as s:
            final = s.get_final_completion()
    else:
        final = tenant.oa.chat.completions.create(**kw)
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c.function.arguments) for c in calls] == [{"city": "Paris"}, {"tz": "Europe/Paris"}]
    assert len({c.id for c in calls}) == 2

    (rec,) = denv.upstream.requests
    assert rec.json["tools"] == OA_TOOLS and rec.json["tool_choice"] == "auto"
    assert rec.json["parallel_tool_calls"] is True
    assert rec.json["messages"] == messages  # the image part arrives untouched
    assert tenant.only_record().status == "ok"


@pytest.mark.parametrize("asked", [False, True], ids=["no_include_usage", "include_usage"])
def test_openai_stream_usage_chunk_only_when_asked(denv, tenant, asked):
    denv.upstream.enqueue(Script(text="one two three", usage=Usage(input_tokens=40, output_tokens=3)))
    kw: dict[str, Any] = {"stream_options": {"include_usage": True}} if asked else {}
    chunks = list(tenant.oa.chat.completions.create(model="gpt-test", messages=MSGS, stream=True, **kw))
    usage_chunks = [c for c in chunks if c.usage is not None]
    if asked:
        assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and chunks[-1].choices == []
        assert (usage_chunks[0].usage.prompt_tokens, usage_chunks[0].usage.completion_tokens) == (40, 3)
    else:
        assert usage_chunks == []
        assert all(c.choices for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    assert chunks[-1 if not asked else -2].choices[0].finish_reason == "stop"
    # the gateway always asks the upstream for usage, so it can bill
    assert denv.upstream.requests[0].json["stream_options"]["include_usage"] is True
    r = tenant.only_record()
    assert (r.input_tokens, r.output_tokens, r.usage_source) == (40, 3, "upstream")


def test_openai_stream_raw_bytes_untouched(denv, tenant):
    """Passthrough relays the upstream's SSE bytes as they are (no re-serialisation)."""
    frames = [
        'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
        '"choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":null}],'
        '"x_vendor":{"keep":  "spacing"}}\n\n',
        ': keep-alive comment\n\n',
        'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini",'
        '"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n',
        'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[],'
        '"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}\n\n',
        "data: [DONE]\n\n",
    ]
    denv.upstream.enqueue(Script(raw_frames=frames))
    body = {"model": "gpt-test", "messages": MSGS, "stream": True, "stream_options": {"include_usage": True}}
    with httpx.Client(timeout=20) as c:
        r = c.post(denv.url + "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {tenant.key}"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text == "".join(frames)
    rec = tenant.only_record()
    assert (rec.input_tokens, rec.output_tokens) == (9, 1)


# ---- Anthropic ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
@pytest.mark.parametrize("auth", ["x-api-key", "bearer"])
def test_anthropic_text_roundtrip(denv, stream, auth):
    t = Tenant(denv)
    an = an_client(denv, t.key, bearer=auth == "bearer", default_headers={"Cookie": "sid=secret-session"})
    denv.upstream.enqueue(Script(text="Hallo Welt und so"))
    betas = ["interleaved-thinking-2025-05-14", "context-management-2025-06-27"]
    kw: dict[str, Any] = dict(
        model="claude-test", max_tokens=64, messages=MSGS,
        system=[{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        extra_body={"context_management": {"edits": []}, "output_config": {"effort": "low"}},
        extra_headers={"anthropic-beta": ",".join(betas)}, extra_query={"beta": "true"},
    )
    if stream:
        with an.messages.stream(**kw) as s:
            types = [e.type for e in s]
            final = s.get_final_message()
        assert types[0] == "message_start" and types[-1] == "message_stop"
    else:
        final = an.messages.create(**kw)
    assert final.content[0].text == "Hallo Welt und so"

    (rec,) = denv.upstream.requests
    assert rec.path == "/v1/messages"
    assert rec.json["model"] == "claude-sonnet-4-5"
    assert rec.json["system"] == kw["system"] and rec.json["messages"] == MSGS and rec.json["max_tokens"] == 64
    assert rec.json["context_management"] == {"edits": []} and rec.json["output_config"] == {"effort": "low"}
    assert rec.headers.get("anthropic-beta") == ",".join(betas)
    assert_credentials(rec, "anthropic", t.key)

    r = t.only_record()
    assert (r.status, r.protocol, r.upstream_protocol, r.channel, r.stream) == (
        "ok", "anthropic", "anthropic", "ant", stream)
    assert r.usage_source == "upstream" and r.output_tokens == 4 and r.cost_micro > 0
    an.close()
    t.close()


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_anthropic_parallel_tool_use_and_image(denv, tenant, stream):
    denv.upstream.enqueue(Script(tool_calls=CALLS, text="Let me check."))
    messages = [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG_B64}},
        {"type": "text", "text": "Where is this, and what's the weather there?"},
    ]}]
    kw: dict[str, Any] = dict(model="claude-test", max_tokens=256, messages=messages, tools=AN_TOOLS,
                              tool_choice={"type": "auto"})
    if stream:
        with tenant.an.messages.stream(**kw) as s:
            final = s.get_final_message()
    else:
        final = tenant.an.messages.create(**kw)
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use", "tool_use"]
    uses = final.content[1:]
    assert [(u.name, u.input) for u in uses] == [("get_weather", {"city": "Paris"}),
                                                 ("get_time", {"tz": "Europe/Paris"})]

    (rec,) = denv.upstream.requests
    assert rec.json["tools"] == AN_TOOLS and rec.json["tool_choice"] == {"type": "auto"}
    assert rec.json["messages"] == messages
    assert tenant.only_record().status == "ok"


def test_anthropic_beta_client_and_tool_result_turn(denv, tenant):
    """client.beta.messages with ?beta=true and a tool_result follow-up turn."""
    denv.upstream.enqueue(Script(text="It is sunny."))
    messages = [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "get_weather",
                                           "input": {"city": "Paris"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 21C"}]},
    ]
    msg = tenant.an.beta.messages.create(model="claude-test", max_tokens=50, messages=messages, tools=AN_TOOLS,
                                         betas=["token-efficient-tools-2025-02-19"],
                                         extra_query={"beta": "true"})
    assert msg.content[0].text == "It is sunny."
    (rec,) = denv.upstream.requests
    assert rec.json["messages"] == messages
    assert rec.headers["anthropic-beta"] == "token-efficient-tools-2025-02-19"
    assert tenant.only_record().status == "ok"


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_unknown_events_and_pings_pass_through(denv, tenant, protocol):
    """Events a client must tolerate (comments, pings, future event types, Azure-style
    empty-choices chunks) are relayed, and the SDKs still assemble the answer."""
    denv.upstream.enqueue(Script(text="still fine", unknown_event=2))
    if protocol == "openai":
        with tenant.oa.chat.completions.stream(model="gpt-test", messages=MSGS) as s:
            assert s.get_final_completion().choices[0].message.content == "still fine"
    else:
        with tenant.an.messages.stream(model="claude-test", max_tokens=20, messages=MSGS) as s:
            assert s.get_final_message().content[0].text == "still fine"
    rec = tenant.only_record()
    assert rec.status == "ok" and rec.usage_source == "upstream"


def test_anthropic_stream_raw_bytes_untouched(denv, tenant):
    frames = [
        'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_1","type":"message",'
        '"role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,'
        '"usage":{"input_tokens":12,"cache_read_input_tokens":30,"output_tokens":1}}}\n\n',
        'event: ping\ndata: {"type": "ping"}\n\n',
        'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        '"content_block":{"type":"text","text":""}}\n\n',
        'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":"h\\u00e9llo"}}\n\n',
        'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
        'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        '"stop_sequence":null},"usage":{"output_tokens":3}}\n\n',
        'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ]
    denv.upstream.enqueue(Script(raw_frames=frames))
    body = {"model": "claude-test", "max_tokens": 10, "messages": MSGS, "stream": True}
    r = httpx.post(denv.url + "/v1/messages?beta=true", json=body, headers={"x-api-key": tenant.key}, timeout=20)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text == "".join(frames)
    rec = tenant.only_record()
    assert (rec.input_tokens, rec.cache_read_tokens, rec.output_tokens) == (12, 30, 3)
