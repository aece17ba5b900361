"""Responses requests → Chat Completions and Anthropic Messages, over Codex CLI's real request
bodies (tests/fixtures/codex) and hand-made items for what Codex sends in other configurations."""

from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest

from a2agent.translate.errors import TranslationError
from a2agent.translate.responses_to_chat import responses_request_to_chat
from a2agent.translate.responses_to_messages import (
    DEFAULT_MAX_TOKENS,
    responses_request_to_messages,
)

CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "codex"
BODIES = ["003", "004", "005", "006"]


def capture(name: str) -> dict[str, Any]:
    return orjson.loads((CAPTURES / f"{name}_POST_v1_responses.json").read_bytes())


def to_chat(body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return responses_request_to_chat(body, upstream_model="up", **kw)[0]


def to_messages(body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return responses_request_to_messages(body, upstream_model="up", **kw)[0]


@pytest.mark.parametrize("name", BODIES)
def test_codex_captures_to_chat(name: str) -> None:
    body = capture(name)
    out = to_chat(body, reasoning=True)
    items = body["input"]
    msgs = out["messages"]
    # developer messages → system, in place; user messages kept; history calls → one assistant turn
    assert [m["role"] for m in msgs][:3] == ["system", "user", "user"]  # both developer messages, joined
    developer = [p["text"] for i in items if i.get("role") == "developer" for p in i["content"]]
    assert msgs[0]["content"] == "\n\n".join(developer)
    calls = [i for i in items if i["type"] in ("function_call", "custom_tool_call")]
    outputs = [i for i in items if i["type"].endswith("_output")]
    assistant = [m for m in msgs if m["role"] == "assistant"]
    assert sum(len(m.get("tool_calls", [])) for m in assistant) == len(calls)
    assert [m["tool_call_id"] for m in msgs if m["role"] == "tool"] == [o["call_id"] for o in outputs]
    for call in calls:
        tc = next(tc for m in assistant for tc in m["tool_calls"] if tc["id"] == call["call_id"])
        if call["type"] == "custom_tool_call":  # apply_patch's raw patch text, wrapped
            assert orjson.loads(tc["function"]["arguments"]) == {"input": call["input"]}
        else:
            assert tc["function"]["arguments"] == call["arguments"]
    names = [t["function"]["name"] for t in out["tools"]]
    assert names == [t["name"] if t["type"] != "tool_search" else "tool_search" for t in body["tools"]]
    patch = next(t["function"] for t in out["tools"] if t["function"]["name"] == "apply_patch")
    assert patch["parameters"]["required"] == ["input"] and "begin_patch" in patch["description"]
    assert out["stream"] is True and out["stream_options"] == {"include_usage": True}
    assert out["reasoning_effort"] == "medium"
    for dropped in ("store", "include", "prompt_cache_key", "client_metadata", "text", "input", "reasoning"):
        assert dropped not in out
    if name == "006":  # the reasoning item before the call rides along as reasoning_content
        assert assistant[0]["reasoning_content"] == "**Planning** I will run a shell command."


@pytest.mark.parametrize("name", BODIES)
def test_codex_captures_to_messages(name: str) -> None:
    body = capture(name)
    out = to_messages(body, reasoning=True)
    developer = [p["text"] for i in body["input"] if i.get("role") == "developer" for p in i["content"]]
    assert out["system"] == [{"type": "text", "text": "\n\n".join(developer),
                              "cache_control": {"type": "ephemeral"}}]
    assert out["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert sum("cache_control" in b for m in out["messages"] for b in m["content"]) == 1
    roles = [m["role"] for m in out["messages"]]
    assert all(a != b for a, b in itertools.pairwise(roles)), roles  # strictly alternating
    assert roles[0] == "user"
    if name == "004":  # its tool call came without reasoning: thinking would be refused
        assert "thinking" not in out
    else:
        assert out["max_tokens"] >= out["thinking"]["budget_tokens"] + 4096
    assert out["tool_choice"] == {"type": "auto"}
    tool_uses = [b for m in out["messages"] for b in m["content"] if b["type"] == "tool_use"]
    results = [b for m in out["messages"] for b in m["content"] if b["type"] == "tool_result"]
    calls = [i for i in body["input"] if i["type"] in ("function_call", "custom_tool_call")]
    assert [b["id"] for b in tool_uses] == [c["call_id"] for c in calls]
    assert [b["tool_use_id"] for b in results] == [c["call_id"] for c in calls]
    for block, call in zip(tool_uses, calls, strict=True):
        want = {"input": call["input"]} if call["type"] == "custom_tool_call" else orjson.loads(call["arguments"])
        assert block["input"] == want
    if name == "006":  # thinking first in the assistant turn, signature from encrypted_content
        turn = out["messages"][1]["content"]
        assert turn[0] == {"type": "thinking", "thinking": "**Planning** I will run a shell command.",
                           "signature": "gAAAAmock-opaque-reasoning-blob"}
        assert turn[1]["type"] == "tool_use"


def test_compaction_request_drops_tool_choice() -> None:
    body = capture("003")
    body["tools"] = []
    assert "tool_choice" not in to_chat(body) and "parallel_tool_calls" not in to_chat(body)
    assert "tool_choice" not in to_messages(body) and "tools" not in to_messages(body)


def test_namespace_tools_flattened_and_history_names_match() -> None:
    body = {"model": "m", "tools": [{"type": "namespace", "name": "multi_agent_v1", "tools": [
        {"type": "function", "name": "close_agent", "parameters": {"type": "object", "properties": {}}}]}],
        "input": [{"type": "message", "role": "user", "content": "x"},
                  {"type": "function_call", "call_id": "c", "name": "close_agent", "namespace": "multi_agent_v1",
                   "arguments": "{}"},
                  {"type": "function_call_output", "call_id": "c", "output": "closed"}]}
    chat, tmap = responses_request_to_chat(body, upstream_model="up")
    assert chat["tools"][0]["function"]["name"] == "multi_agent_v1__close_agent"
    assert chat["messages"][1]["tool_calls"][0]["function"]["name"] == "multi_agent_v1__close_agent"
    ref = tmap.ref("multi_agent_v1__close_agent")
    assert (ref.kind, ref.name, ref.namespace) == ("function", "close_agent", "multi_agent_v1")


def test_tool_search_call_and_output() -> None:
    found = {"type": "namespace", "name": "mcp__docs", "tools": [
        {"type": "function", "name": "lookup", "parameters": {"type": "object", "properties": {}}}]}
    body = {"model": "m", "tools": [{"type": "tool_search", "execution": "client", "description": "find tools",
                                     "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}],
            "input": [{"type": "message", "role": "user", "content": "x"},
                      {"type": "tool_search_call", "call_id": "s1", "execution": "client",
                       "arguments": {"query": "docs"}},
                      {"type": "tool_search_output", "call_id": "s1", "execution": "client", "tools": [found]}]}
    chat = to_chat(body)
    assert [t["function"]["name"] for t in chat["tools"]] == ["tool_search", "mcp__docs__lookup"]
    call = chat["messages"][1]["tool_calls"][0]
    assert (call["function"]["name"], orjson.loads(call["function"]["arguments"])) == ("tool_search",
                                                                                       {"query": "docs"})
    msgs = to_messages(body)
    assert msgs["messages"][1]["content"][0]["input"] == {"query": "docs"}
    assert [t["name"] for t in msgs["tools"]] == ["tool_search", "mcp__docs__lookup"]


@pytest.mark.parametrize("choice,chat_want,ant_want", [
    ("auto", "auto", {"type": "auto"}),
    ("required", "required", {"type": "any"}),
    ("none", "none", {"type": "none"}),
    ({"type": "function", "name": "f"}, {"type": "function", "function": {"name": "f"}}, {"type": "tool", "name": "f"}),
])
def test_tool_choice(choice: Any, chat_want: Any, ant_want: Any) -> None:
    body = {"model": "m", "input": "x", "tool_choice": choice, "parallel_tool_calls": False,
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]}
    assert to_chat(body)["tool_choice"] == chat_want
    assert to_chat(body)["parallel_tool_calls"] is False
    got = to_messages(body)["tool_choice"]
    assert {k: v for k, v in got.items() if k != "disable_parallel_tool_use"} == ant_want
    assert got.get("disable_parallel_tool_use") is (None if choice == "none" else True)


def test_messages_limits_and_sampling() -> None:
    base = {"model": "m", "input": "x"}
    assert to_messages(base)["max_tokens"] == DEFAULT_MAX_TOKENS
    assert to_messages(base, max_output=4000)["max_tokens"] == 4000
    assert to_messages({**base, "max_output_tokens": 128000}, max_output=32000)["max_tokens"] == 32000
    both = to_messages({**base, "temperature": 0.2, "top_p": 0.9})
    assert both["temperature"] == 0.2 and "top_p" not in both
    assert to_messages({**base, "top_p": 0.9})["top_p"] == 0.9
    thinking = to_messages({**base, "temperature": 0.2, "reasoning": {"effort": "high"}}, reasoning=True)
    assert thinking["thinking"] == {"type": "enabled", "budget_tokens": 16384} and "temperature" not in thinking
    assert thinking["max_tokens"] >= 16384 + 4096
    small = to_messages({**base, "max_output_tokens": 5000, "reasoning": {"effort": "high"}}, reasoning=True)
    assert small["max_tokens"] == 5000 and "thinking" not in small  # no room for both: answer wins
    assert "thinking" not in to_messages({**base, "reasoning": {"effort": "high"}})  # channel without it
    assert to_chat({**base, "max_output_tokens": 128000}, max_output=16384)["max_tokens"] == 16384


def test_content_parts() -> None:
    body = {"model": "m", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "see"},
                                     {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "a picture"}]},
        {"role": "system", "content": "late rule"}]}
    chat = to_chat(body)
    assert chat["messages"][0]["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert chat["messages"][1] == {"role": "assistant", "content": "a picture"}
    assert chat["messages"][2] == {"role": "system", "content": "late rule"}
    ant = to_messages(body)
    assert ant["messages"][0]["content"][1] == {"type": "image", "source": {
        "type": "base64", "media_type": "image/png", "data": "AAAA"}}
    assert ant["system"][0]["text"] == "late rule"


@pytest.mark.parametrize("patch,param", [
    ({"previous_response_id": "resp_1"}, "previous_response_id"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "input.0"),
    ({"input": [{"type": "mystery"}]}, "input.0.type"),
    ({"tools": [{"type": "hologram"}]}, "tools.0.type"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "input.0.content.0"),
])
def test_refusals_name_the_field(patch: dict[str, Any], param: str) -> None:
    body = copy.deepcopy({"model": "m", "input": "x", **patch})
    for translate in (to_chat, to_messages):
        with pytest.raises(TranslationError) as exc:
            translate(body)
        assert exc.value.param == param


def test_thinking_off_when_the_tool_loop_has_unsigned_turns() -> None:
    call = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    out = {"type": "function_call_output", "call_id": "c", "output": "ok"}
    signed = {"type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": "t"}],
              "encrypted_content": "SIG"}
    base = {"model": "m", "reasoning": {"effort": "medium"},
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}]}
    user = {"role": "user", "content": "go"}
    assert "thinking" not in to_messages({**base, "input": [user, call, out]}, reasoning=True)
    assert "thinking" in to_messages({**base, "input": [user, signed, call, out]}, reasoning=True)
    # an unsigned loop before the latest user message does not matter
    later = [user, call, out, {"role": "assistant", "content": "done"}, {"role": "user", "content": "again"}]
    assert "thinking" in to_messages({**base, "input": later}, reasoning=True)


def test_output_schema() -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    body = {"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "name": "out", "schema": schema,
                                                            "strict": True}}}
    assert to_chat(body)["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "out", "schema": schema, "strict": True}}
    system = to_messages(body)["system"][0]["text"]
    assert system.startswith("Respond with a single JSON value") and '"boolean"' in system
