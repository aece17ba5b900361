"""Chat and Messages streams → Responses events, event by event; every event validated against
the openai SDK's ``ResponseStreamEvent`` types, and the passthrough adapter over Codex captures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai.types.responses as rt
import orjson
import pytest
from pydantic import TypeAdapter

from a2agent.providers.responses import ResponsesPassthrough
from a2agent.providers.sse import SSEDecoder
from a2agent.translate.chat_stream_to_responses import ChatStreamToResponses
from a2agent.translate.messages_stream_to_responses import MessagesStreamToResponses
from a2agent.translate.responses_items import build_tool_map
from a2agent.translate.responses_to_chat import chat_response_to_responses
from a2agent.translate.responses_to_messages import messages_response_to_responses

EVENT = TypeAdapter(rt.ResponseStreamEvent)
CAPTURES = Path(__file__).resolve().parents[1] / "fixtures" / "codex"
TOOLS = [{"type": "function", "name": "exec_command", "parameters": {"type": "object"}},
         {"type": "custom", "name": "apply_patch"},
         {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "close", "parameters": {}}]}]
REQUEST = {"model": "m", "input": "x", "tools": TOOLS}


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
    if usage is not None:
        out = {"choices": [], "usage": usage}
    return out


def check(events: list[dict[str, Any]]) -> list[str]:
    """Every event valid for the SDK, numbered 0..n-1; returns the types."""
    for i, ev in enumerate(events):
        EVENT.validate_python(ev)
        assert ev["sequence_number"] == i
    added = [e["output_index"] for e in events if e["type"] == "response.output_item.added"]
    done = [e["output_index"] for e in events if e["type"] == "response.output_item.done"]
    assert added == list(range(len(added))) and sorted(done) == added  # announced in order, all closed
    return [e["type"] for e in events]


def chat_sm() -> ChatStreamToResponses:
    return ChatStreamToResponses(REQUEST, model="m", tool_map=build_tool_map(TOOLS))


def test_chat_text_and_reasoning_event_by_event() -> None:
    sm = chat_sm()
    events = sm.feed(chunk({"role": "assistant", "reasoning_content": "hm"}))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress",
                                           "response.output_item.added", "response.reasoning_text.delta"]
    step = sm.feed(chunk({"content": "Hel"}))
    assert [e["type"] for e in step] == ["response.reasoning_text.done", "response.output_item.done",
                                         "response.output_item.added", "response.content_part.added",
                                         "response.output_text.delta"]
    events += step
    events += sm.feed(chunk({"content": "lo"}, finish="stop"))
    events += sm.feed(chunk(usage={"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57,
                                   "prompt_tokens_details": {"cached_tokens": 20},
                                   "completion_tokens_details": {"reasoning_tokens": 3}}))
    events += sm.finish()
    types = check(events)
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    final = events[-1]["response"]
    assert final["status"] == "completed"
    assert [i["type"] for i in final["output"]] == ["reasoning", "message"]
    assert final["output"][1]["content"][0]["text"] == "Hello"
    assert final["usage"] == {"input_tokens": 50, "input_tokens_details": {"cached_tokens": 20,
                                                                           "cache_write_tokens": 0},
                              "output_tokens": 7, "output_tokens_details": {"reasoning_tokens": 3},
                              "total_tokens": 57}


def test_chat_tool_calls_of_every_kind() -> None:
    sm = chat_sm()
    events = sm.feed(chunk({"content": "Running."}))
    events += sm.feed(chunk({"tool_calls": [{"index": 0, "id": "c0", "type": "function",
                                             "function": {"name": "exec_command", "arguments": ""}}]}))
    events += sm.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"cmd":'}},
                                            {"index": 1, "id": "c1", "function": {"name": "apply_patch",
                                                                                   "arguments": '{"input":"P'}}]}))
    events += sm.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"ls"}'}},
                                            {"index": 1, "function": {"arguments": 'ATCH"}'}},
                                            {"index": 2, "id": "c2", "function": {"name": "ns__close"}}]},
                            finish="tool_calls"))
    events += sm.finish()
    types = check(events)
    deltas = [e["delta"] for e in events if e["type"] == "response.function_call_arguments.delta"]
    assert "".join(deltas[:2]) == '{"cmd":"ls"}'
    assert [e["input"] for e in events if e["type"] == "response.custom_tool_call_input.done"] == ["PATCH"]
    items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [(i["type"], i.get("name"), i.get("namespace")) for i in items] == [
        ("message", None, None), ("function_call", "exec_command", None), ("custom_tool_call", "apply_patch", None),
        ("function_call", "close", "ns")]
    assert items[1]["arguments"] == '{"cmd":"ls"}' and items[3]["arguments"] == "{}"  # always a JSON string
    assert items[2]["input"] == "PATCH" and items[2]["call_id"] == "c1"
    assert types[-1] == "response.completed"


def test_chat_length_stop_is_incomplete_and_failure_is_failed() -> None:
    sm = chat_sm()
    events = sm.feed(chunk({"content": "cut"}, finish="length")) + sm.finish()
    check(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    sm = chat_sm()
    events = sm.feed(chunk({"content": "half"})) + sm.fail("upstream_error", "Upstream reset; incomplete.")
    check_types = [e["type"] for e in events]
    assert check_types[-1] == "response.failed" and "response.output_item.done" not in check_types
    for ev in events:
        EVENT.validate_python(ev)
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "Upstream reset; incomplete."}
    assert sm.fail("x", "y") == []  # one terminal event only


def messages_sm() -> MessagesStreamToResponses:
    return MessagesStreamToResponses(REQUEST, model="m", tool_map=build_tool_map(TOOLS))


def test_messages_stream_event_by_event() -> None:
    sm = messages_sm()
    feed = [
        ("message_start", {"message": {"usage": {"input_tokens": 10, "cache_read_input_tokens": 90,
                                                 "cache_creation_input_tokens": 5, "output_tokens": 1}}}),
        ("content_block_start", {"index": 0, "content_block": {"type": "thinking", "thinking": ""}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "thinking_delta", "thinking": "plan"}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "signature_delta", "signature": "SIG=="}}),
        ("content_block_stop", {"index": 0}),
        ("content_block_start", {"index": 1, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": 1, "delta": {"type": "text_delta", "text": "ok"}}),
        ("content_block_stop", {"index": 1}),
        ("content_block_start", {"index": 2, "content_block": {"type": "tool_use", "id": "t1",
                                                               "name": "apply_patch", "input": {}}}),
        ("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": '{"input":'}}),
        ("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": '"P"}'}}),
        ("content_block_stop", {"index": 2}),
        ("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 12}}),
    ]
    events: list[dict[str, Any]] = []
    for name, data in feed:
        events += sm.feed(name, data)
    events += sm.finish()
    types = check(events)
    assert types.count("response.output_item.done") == 3 and types[-1] == "response.completed"
    out = events[-1]["response"]["output"]
    assert out[0]["encrypted_content"] == "SIG==" and out[0]["content"][0]["text"] == "plan"
    assert out[1]["content"][0]["text"] == "ok"
    assert (out[2]["type"], out[2]["input"], out[2]["call_id"]) == ("custom_tool_call", "P", "t1")
    usage = events[-1]["response"]["usage"]
    assert (usage["input_tokens"], usage["input_tokens_details"]["cached_tokens"], usage["output_tokens"],
            usage["total_tokens"]) == (105, 90, 12, 117)


def test_messages_redacted_thinking_and_max_tokens() -> None:
    sm = messages_sm()
    events = sm.feed("content_block_start", {"index": 0, "content_block": {"type": "redacted_thinking",
                                                                           "data": "ENC"}})
    events += sm.feed("content_block_stop", {"index": 0})
    events += sm.feed("message_delta", {"delta": {"stop_reason": "max_tokens"}, "usage": {"output_tokens": 3}})
    events += sm.finish()
    check(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["output"][0]["encrypted_content"] == "redacted:ENC"


def test_nonstream_answers_validate() -> None:
    tmap = build_tool_map(TOOLS)
    chat = {"choices": [{"message": {"role": "assistant", "content": "hi", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "ns__close", "arguments": "{}"}}]},
        "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}
    data = chat_response_to_responses(chat, request=REQUEST, model="m", tool_map=tmap)
    resp = rt.Response.model_validate(data)
    assert resp.output_text == "hi" and resp.output[1].name == "close"
    assert data["output"][1]["namespace"] == "ns" and data["status"] == "completed"
    msg = {"content": [{"type": "text", "text": "a"}, {"type": "tool_use", "id": "t", "name": "exec_command",
                                                       "input": {"cmd": "ls"}}],
           "stop_reason": "tool_use", "usage": {"input_tokens": 4, "output_tokens": 6}}
    resp = rt.Response.model_validate(messages_response_to_responses(msg, request=REQUEST, model="m", tool_map=tmap))
    assert resp.output[1].arguments == '{"cmd":"ls"}' and resp.usage.total_tokens == 10


@pytest.mark.parametrize("name", ["002", "004", "006"])
def test_passthrough_relays_codex_capture_and_reads_usage(name: str) -> None:
    raw = (CAPTURES / f"{name}_response.sse").read_bytes()
    adapter = ResponsesPassthrough({"model": "m", "stream": True}, model="m", upstream_model="m", input_estimate=1)
    out = b"".join(adapter.on_event(ev) for ev in SSEDecoder().feed(raw))
    assert out == raw and adapter.completed and adapter.upstream_error is None
    final = orjson.loads(raw.strip().split(b"data: ")[-1])["response"]["usage"]
    cached = final["input_tokens_details"]["cached_tokens"]
    assert adapter.usage is not None
    assert (adapter.usage.input_tokens, adapter.usage.cache_read_tokens, adapter.usage.output_tokens) == (
        final["input_tokens"] - cached, cached, final["output_tokens"])



def _text_then_call(lane: str) -> tuple[Any, list[dict[str, Any]]]:
    """A stream of reasoning, text and one whole function call, up to (not including) its end."""
    tmap = build_tool_map(TOOLS)
    if lane == "chat":
        sm: Any = ChatStreamToResponses(REQUEST, model="m", tool_map=tmap)
        events = sm.feed(chunk({"role": "assistant", "reasoning_content": "think"}))
        events += sm.feed(chunk({"content": "Hello"}))
        events += sm.feed(chunk({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                                                 "function": {"name": "exec_command", "arguments": '{"cmd":'}}]}))
        events += sm.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"ls"}'}}]}, "tool_calls"))
        return sm, events
    sm = MessagesStreamToResponses(REQUEST, model="m", tool_map=tmap)
    events = sm.feed("message_start", {"message": {"usage": {"input_tokens": 3, "output_tokens": 1}}})
    for index, block, delta in ((0, {"type": "thinking", "thinking": ""}, {"type": "thinking_delta", "thinking": "think"}),
                                (1, {"type": "text", "text": ""}, {"type": "text_delta", "text": "Hello"})):
        events += sm.feed("content_block_start", {"index": index, "content_block": block})
        events += sm.feed("content_block_delta", {"index": index, "delta": delta})
        events += sm.feed("content_block_stop", {"index": index})
    events += sm.feed("content_block_start", {"index": 2, "content_block": {
        "type": "tool_use", "id": "t1", "name": "exec_command", "input": {}}})
    for part in ('{"cmd":', '"ls"}'):
        events += sm.feed("content_block_delta", {"index": 2, "delta": {"type": "input_json_delta", "partial_json": part}})
    events += sm.feed("content_block_stop", {"index": 2})
    events += sm.feed("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}})
    return sm, events


@pytest.mark.parametrize("lane", ["chat", "messages"])
def test_writer_counts_what_the_client_was_sent(lane: str) -> None:
    """The writer's relayed output (what a broken stream is charged for): every text and
    reasoning delta as it is sent; a call only once its item is done, when the answer is whole."""
    sm, events = _text_then_call(lane)
    sent = "".join(e["delta"] for e in events if e["type"] in ("response.reasoning_text.delta",
                                                                "response.output_text.delta"))
    assert sent == "thinkHello" and "".join(sm.w.relayed) == sent and sm.w.relayed_chars == len(sent)
    assert not any(e["type"] == "response.output_item.done" and e["item"]["type"] == "function_call"
                   for e in events)  # the call is still held back: a break now charges the text only
    failed = sm.fail("server_error", "Upstream reset the connection.")
    assert failed[-1]["type"] == "response.failed" and sm.w.relayed_chars == len(sent)

    sm, _ = _text_then_call(lane)  # the same stream, completed: the finished call counts too
    done = sm.finish()
    assert [e["item"]["type"] for e in done if e["type"] == "response.output_item.done"] == ["function_call"]
    assert "".join(sm.w.relayed) == sent + 'exec_command{"cmd":"ls"}'
    assert sm.w.relayed_chars == len(sent + 'exec_command{"cmd":"ls"}')
