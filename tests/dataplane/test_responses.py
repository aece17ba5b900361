"""POST /v1/responses through the gateway with the official openai SDK, on both translation
lanes (Chat Completions channel, Anthropic Messages channel), stream and non-stream.

What must hold: the SDK parses every event and accumulates the same final output as a
non-stream call; tool calls come back as the caller's item kinds; the request is recorded as
protocol ``responses`` and charged exactly the upstream's usage at the model's prices.
"""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import orjson
import pytest
import zstandard

from tests.dataplane.conftest import Tenant, assert_error, expected_cost
from tests.support import Script, ToolCall, Usage

MODELS = {"chat": "gpt-test", "messages": "claude-test"}
TOOLS = [
    {"type": "function", "name": "exec_command", "description": "Run a shell command", "strict": False,
     "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}},
    {"type": "custom", "name": "apply_patch", "description": "Edit files",
     "format": {"type": "grammar", "syntax": "lark", "definition": "start: /.+/"}},
    {"type": "namespace", "name": "multi_agent_v1", "description": "agents",
     "tools": [{"type": "function", "name": "close_agent", "description": "Close",
                "parameters": {"type": "object", "properties": {"id": {"type": "string"}}}}]},
    {"type": "web_search", "external_web_access": True},
]


def _outputs(resp: Any) -> list[dict[str, Any]]:
    return [item.model_dump(exclude_none=True) for item in resp.output]


def _strip_ids(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "id"} for item in items]


@pytest.mark.parametrize("lane", ["chat", "messages"])
def test_text_stream_and_nonstream_agree(denv: Any, lane: str) -> None:
    t = Tenant(denv)
    denv.upstream.enqueue(Script(text="Hello from upstream", usage=Usage(input_tokens=30, output_tokens=4,
                                                                         cache_read_tokens=10)))
    plain = t.oa.responses.create(model=MODELS[lane], input="Say hello", instructions="Be brief.")
    denv.upstream.enqueue(Script(text="Hello from upstream", usage=Usage(input_tokens=30, output_tokens=4,
                                                                         cache_read_tokens=10)))
    with t.oa.responses.stream(model=MODELS[lane], input="Say hello", instructions="Be brief.") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert plain.output_text == final.output_text == "Hello from upstream"
    assert _strip_ids(_outputs(plain)) == _strip_ids(_outputs(final))
    seqs = [e.sequence_number for e in events]
    assert seqs == list(range(len(events)))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    for resp in (plain, final):
        u = resp.usage
        assert (u.input_tokens, u.input_tokens_details.cached_tokens, u.output_tokens, u.total_tokens) == (
            40, 10, 4, 44)
    sent = denv.upstream.requests[0]
    body = orjson.loads(sent.body)
    if lane == "chat":
        assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    else:
        assert body["system"][0]["text"] == "Be brief." and body["max_tokens"] > 0
    recs = t.records()
    assert [r.protocol for r in recs] == ["responses", "responses"]
    assert all(r.cost_micro == expected_cost(30, 4, cache_read=10) for r in recs)
    assert all(r.upstream_protocol == ("openai" if lane == "chat" else "anthropic") for r in recs)


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
@pytest.mark.parametrize("lane", ["chat", "messages"])
def test_tool_calls_come_back_as_caller_kinds(denv: Any, lane: str, stream: bool) -> None:
    t = Tenant(denv)
    calls = [ToolCall("exec_command", {"cmd": "echo hi"}, id="call_1"),
             ToolCall("apply_patch", {"input": "*** Begin Patch\n*** End Patch\n"}, id="call_2"),
             ToolCall("multi_agent_v1__close_agent", {"id": "a1"}, id="call_3")]
    denv.upstream.enqueue(Script(tool_calls=calls))
    kw = {"model": MODELS[lane], "input": "Run it", "tools": TOOLS, "tool_choice": "auto"}
    if stream:
        with t.oa.responses.stream(**kw) as s:
            for _ in s:
                pass
            resp = s.get_final_response()
    else:
        resp = t.oa.responses.create(**kw)
    items = _outputs(resp)
    kinds = [(i["type"], i.get("name"), i.get("namespace")) for i in items]
    assert kinds == [("function_call", "exec_command", None), ("custom_tool_call", "apply_patch", None),
                     ("function_call", "close_agent", "multi_agent_v1")]
    assert items[0]["arguments"] == '{"cmd":"echo hi"}' and items[0]["call_id"] == "call_1"
    assert items[1]["input"] == "*** Begin Patch\n*** End Patch\n"
    sent = orjson.loads(denv.upstream.requests[0].body)
    names = ([tl["function"]["name"] for tl in sent["tools"]] if lane == "chat"
             else [tl["name"] for tl in sent["tools"]])
    assert names == ["exec_command", "apply_patch", "multi_agent_v1__close_agent"]  # web_search dropped
    t.only_record()


@pytest.mark.parametrize("lane", ["chat", "messages"])
def test_history_round_trip_reaches_upstream(denv: Any, lane: str) -> None:
    t = Tenant(denv)
    history = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev rules"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "patch it"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "hm"}],
         "encrypted_content": "sig-abc"},
        {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "exec_command",
         "arguments": '{"cmd":"ls"}', "status": "completed"},
        {"type": "custom_tool_call", "id": "ctc_1", "call_id": "c2", "name": "apply_patch", "input": "PATCH",
         "status": "completed"},
        {"type": "function_call_output", "call_id": "c1", "output": "a.txt"},
        {"type": "custom_tool_call_output", "call_id": "c2", "output": "Done"},
    ]
    denv.upstream.enqueue(Script(text="ok"))
    r = httpx.post(denv.url + "/v1/responses", headers={"authorization": f"Bearer {t.key}"},
                   json={"model": MODELS[lane], "input": history, "tools": TOOLS, "store": True}, timeout=20)
    assert r.status_code == 200, r.text
    sent = orjson.loads(denv.upstream.requests[0].body)
    if lane == "chat":
        msgs = sent["messages"]
        assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool", "tool"]
        assert [tc["function"]["name"] for tc in msgs[2]["tool_calls"]] == ["exec_command", "apply_patch"]
        assert msgs[2]["tool_calls"][1]["function"]["arguments"] == '{"input":"PATCH"}'
    else:
        assert sent["system"][0]["text"] == "dev rules"
        msgs = sent["messages"]
        assert [m["role"] for m in msgs] == ["user", "assistant", "user"]
        assert msgs[1]["content"][0] == {"type": "thinking", "thinking": "hm", "signature": "sig-abc"}
        assert [b["input"] for b in msgs[1]["content"][1:]] == [{"cmd": "ls"}, {"input": "PATCH"}]
        assert [b["type"] for b in msgs[2]["content"]] == ["tool_result", "tool_result"]
    t.only_record()


def test_thinking_signature_returned_in_encrypted_content(denv: Any) -> None:
    t = Tenant(denv)
    denv.upstream.enqueue(Script(text="answer", reasoning="let me think", signature="SIG/+=xyz"))
    with t.oa.responses.stream(model="claude-test", input="q") as s:
        for _ in s:
            pass
        resp = s.get_final_response()
    items = _outputs(resp)
    assert items[0]["type"] == "reasoning" and items[0]["encrypted_content"] == "SIG/+=xyz"
    assert items[0]["content"] == [{"type": "reasoning_text", "text": "let me think"}]
    assert resp.output_text == "answer"
    t.only_record()


@pytest.mark.parametrize("path", ["/v1/responses?api-version=1", "/responses"])
def test_paths(denv: Any, path: str) -> None:
    t = Tenant(denv)
    r = httpx.post(denv.url + path, headers={"authorization": f"Bearer {t.key}"}, timeout=20,
                   json={"model": "claude-test", "input": "hi"})
    assert r.status_code == 200 and r.json()["status"] == "completed", r.text
    t.only_record()


@pytest.mark.parametrize("encoding", ["zstd", "gzip"])
def test_compressed_request_bodies(denv: Any, encoding: str) -> None:
    t = Tenant(denv)
    raw = orjson.dumps({"model": "gpt-test", "input": "hi"})
    data = zstandard.ZstdCompressor().compress(raw) if encoding == "zstd" else gzip.compress(raw)
    r = httpx.post(denv.url + "/v1/responses", content=data, timeout=20,
                   headers={"authorization": f"Bearer {t.key}", "content-encoding": encoding,
                            "content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["output"][0]["content"][0]["text"] == "Hello from upstream"
    t.only_record()


def test_refusals_in_openai_envelope(denv: Any) -> None:
    t = Tenant(denv)
    h = {"authorization": f"Bearer {t.key}"}
    r = httpx.post(denv.url + "/responses", headers=h, timeout=20,
                   json={"model": "gpt-test", "input": "hi", "previous_response_id": "resp_1"})
    err = assert_error(r, 400, "openai", code="unsupported_parameter")
    assert err["param"] == "previous_response_id" and "stores no responses" in err["message"]
    r = httpx.post(denv.url + "/v1/responses", headers=h, timeout=20, json={"model": "gpt-test"})
    assert_error(r, 400, "openai", code="missing_required_field")
    r = httpx.post(denv.url + "/v1/responses", headers={**h, "content-encoding": "zstd"}, content=b"nope",
                   timeout=20)
    assert_error(r, 400, "openai", code="unsupported_encoding")
    bomb = zstandard.ZstdCompressor().compress(b" " * (denv.gw.gateway.settings.max_body_bytes + 10))
    r = httpx.post(denv.url + "/v1/responses", headers={**h, "content-encoding": "zstd"}, content=bomb,
                   timeout=20)
    assert_error(r, 413, "openai", code="request_too_large")
    r = httpx.post(denv.url + "/v1/responses", headers=h, timeout=20,
                   json={"model": "gpt-test", "input": [{"type": "item_reference", "id": "x"}]})
    assert_error(r, 400, "openai")
    assert t.records() == []  # refused before admission: no record, nothing charged


@pytest.fixture
def native(denv: Any) -> str:
    """A model served by a channel that speaks Responses natively (relayed as it comes)."""
    snap = denv.call(denv.services.catalog.snapshot(denv.call(denv.services.catalog.current_version())))
    if "resp-native" not in snap.channels:
        denv.call(denv.services.catalog.add_channel("resp-native", protocol="responses",
                                                    base_url=denv.upstream.openai_base, api_key="upstream-native"))
        denv.model("native-test", "resp-native", upstream_model="gpt-5.5")
    return "native-test"


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_native_responses_channel_passthrough(denv: Any, native: str, stream: bool) -> None:
    t = Tenant(denv)
    denv.upstream.enqueue(Script(text="native answer", reasoning="why", tool_calls=[ToolCall("f", {"a": 1})],
                                 usage=Usage(input_tokens=70, output_tokens=9, cache_read_tokens=30)))
    kw = {"model": native, "input": "hi", "store": False}
    if stream:
        with t.oa.responses.stream(**kw) as s:
            for _ in s:
                pass
            resp = s.get_final_response()
    else:
        resp = t.oa.responses.create(**kw)
    assert resp.output_text == "native answer"
    assert [i.type for i in resp.output] == ["reasoning", "message", "function_call"]
    sent = denv.upstream.requests[0]
    assert sent.path == "/v1/responses" and sent.headers["authorization"] == "Bearer upstream-native"
    assert orjson.loads(sent.body)["model"] == "gpt-5.5"
    rec = t.only_record()
    assert (rec.protocol, rec.upstream_protocol, rec.usage_source) == ("responses", "responses", "upstream")
    assert (rec.input_tokens, rec.cache_read_tokens, rec.output_tokens) == (70, 30, 9)
    assert rec.cost_micro == expected_cost(70, 9, cache_read=30)


def test_chat_callers_skip_a_native_responses_channel(denv: Any, native: str) -> None:
    t = Tenant(denv)
    r = httpx.post(denv.url + "/v1/chat/completions", headers={"authorization": f"Bearer {t.key}"}, timeout=20,
                   json={"model": native, "messages": [{"role": "user", "content": "hi"}]})
    err = assert_error(r, 400, "openai", code="unsupported_protocol")
    assert "/v1/responses" in err["message"]
    assert denv.upstream.requests == []


@pytest.mark.parametrize("fault,status,last", [
    ({"status": 500}, 502, None),
    ({"reset_mid_stream": 3}, 200, "response.failed"),
    ({"truncated_sse": 3}, 200, "response.failed"),
    # deltas are relayed without parsing (like every passthrough): a broken one goes through,
    # and the upstream's answer completes and is charged
    ({"malformed_json": 3}, 200, "response.completed"),
    ({"error_event_mid_stream": 3}, 200, "response.failed"),
], ids=["http_500", "reset", "truncated", "malformed_delta", "failed_event"])
def test_native_passthrough_faults(denv: Any, native: str, fault: dict[str, Any], status: int,
                                   last: str | None) -> None:
    """A native Responses channel failing: a JSON error before the stream, else the stream ends
    with exactly one response.failed (the upstream's own, or ours); nothing is charged."""
    t = Tenant(denv)
    denv.upstream.enqueue(Script(text="one two three four", usage=Usage(input_tokens=5, output_tokens=4), **fault))
    with httpx.stream("POST", denv.url + "/v1/responses", headers={"authorization": f"Bearer {t.key}"},
                      json={"model": native, "input": "hi", "stream": True}, timeout=20) as r:
        text = r.read().decode()
    assert r.status_code == status, text
    if last is None:
        assert_error(httpx.Response(status, headers=r.headers, content=text.encode()), status, "openai")
    else:
        types = [orjson.loads(line[6:]).get("type") for line in text.splitlines()
                 if line.startswith("data: {") and line.endswith("}")]
        assert types[-1] == last and types.count(last) == 1, types
        assert "response.completed" not in types or last == "response.completed", types
    rec = t.only_record()
    if last == "response.completed":
        assert rec.status == "ok" and rec.cost_micro == expected_cost(5, 4)
    else:
        assert rec.status == "upstream_error" and rec.cost_micro == 0


@pytest.mark.parametrize("lane", ["chat", "messages"])
def test_every_streamed_event_validates_strictly(denv: Any, lane: str) -> None:
    """The raw events off the wire, validated against the SDK's types (the SDK itself parses
    leniently), for an answer with reasoning, text and every kind of tool call."""
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    adapter = TypeAdapter(ResponseStreamEvent)
    t = Tenant(denv)
    denv.upstream.enqueue(Script(text="Working.", reasoning="plan it", tool_calls=[
        ToolCall("exec_command", {"cmd": "ls"}), ToolCall("apply_patch", {"input": "P"}),
        ToolCall("multi_agent_v1__close_agent", {"id": "a"})]))
    with httpx.stream("POST", denv.url + "/v1/responses", headers={"authorization": f"Bearer {t.key}"},
                      json={"model": MODELS[lane], "input": "go", "tools": TOOLS, "stream": True}, timeout=20) as r:
        events = [orjson.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    for i, ev in enumerate(events):
        adapter.validate_python(ev)
        assert ev["sequence_number"] == i
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call", "custom_tool_call",
                                                    "function_call"]
    assert all(isinstance(i["arguments"], str) for i in final["output"] if i["type"] == "function_call")
    t.only_record()
