"""ChatStreamToMessages: OpenAI chunks → Anthropic SSE events, event by event."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

from a2agent.translate.anthropic_to_openai import ChatStreamToMessages
from a2agent.translate.toolnames import openai_tool_name
from a2agent.translate.usage import Usage

USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 9,
    "total_tokens": 129,
    "prompt_tokens_details": {"cached_tokens": 100},
}


def chunk(delta: dict | None = None, finish: str | None = None, **choice_extra: Any) -> dict:
    choice = {"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}
    choice.update(choice_extra)
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up",
        "choices": [choice],
    }


def usage_chunk(usage: dict = USAGE) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": usage}


def tool(index: int, args: str = "", id: str | None = None, name: str | None = None) -> dict:
    call: dict[str, Any] = {"index": index, "function": {"arguments": args}}
    if id:
        call.update(id=id, type="function")
    if name:
        call["function"]["name"] = name
    return chunk({"tool_calls": [call]})


def run(chunks: list[dict], **kwargs: Any) -> tuple[ChatStreamToMessages, list[tuple[str, dict]]]:
    kwargs.setdefault("model", "claude-x")
    kwargs.setdefault("input_tokens_estimate", 50)
    kwargs.setdefault("message_id", "msg_test")
    translator = ChatStreamToMessages(**kwargs)
    events = [e for c in chunks for e in translator.feed(c)]
    return translator, events + translator.finish()


def start(index: int, block: dict) -> tuple[str, dict]:
    return ("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def delta(index: int, kind: str, **fields: Any) -> tuple[str, dict]:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}})


def stop(index: int) -> tuple[str, dict]:
    return ("content_block_stop", {"type": "content_block_stop", "index": index})


TEXT = {"type": "text", "text": ""}
THINKING = {"type": "thinking", "thinking": "", "signature": ""}


def tool_block(id: str, name: str) -> dict:
    return {"type": "tool_use", "id": id, "name": name, "input": {}}


def shape(events: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """Events without message_start/message_delta/message_stop."""
    return [e for e in events if e[0].startswith("content_block")]


def final(events: list[tuple[str, dict]]) -> dict:
    assert events[-1] == ("message_stop", {"type": "message_stop"})
    assert events[-2][0] == "message_delta"
    return events[-2][1]


# ----------------------------------------------------------------------------- text


def test_plain_text_full_event_sequence(anthropic_sdk):
    chunks = [
        chunk({"role": "assistant", "content": "", "refusal": None}),
        chunk({"content": "Hel"}),
        chunk({"content": "lo"}),
        chunk({}, "stop"),
        usage_chunk(),
    ]
    translator, events = run(chunks)
    assert events == [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_test",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-x",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": 50,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "output_tokens": 1,
                    },
                },
            },
        ),
        start(0, TEXT),
        delta(0, "text_delta", text="Hel"),
        delta(0, "text_delta", text="lo"),
        stop(0),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {
                    "input_tokens": 20,
                    "cache_creation_input_tokens": 0,
                    "cache_read_input_tokens": 100,
                    "output_tokens": 9,
                },
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    assert translator.usage == Usage(20, 9, cache_read_tokens=100)
    message = anthropic_sdk(events)
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Hello"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 20
    assert message.usage.cache_read_input_tokens == 100
    assert message.usage.output_tokens == 9


def test_message_delta_waits_for_the_usage_chunk_after_finish_reason():
    translator = ChatStreamToMessages(model="m", input_tokens_estimate=5)
    first = translator.feed(chunk({"content": "x"}))
    assert [e[0] for e in first] == ["message_start", "content_block_start", "content_block_delta"]
    assert translator.feed(chunk({}, "stop")) == []
    assert translator.feed(usage_chunk()) == []
    closing = translator.finish()
    assert [e[0] for e in closing] == ["content_block_stop", "message_delta", "message_stop"]
    assert closing[1][1]["usage"]["output_tokens"] == 9
    assert translator.finish() == []  # idempotent


def test_stream_without_usage_reports_estimates():
    translator, events = run([chunk({"content": "abcdefghij"}), chunk({}, "stop")], input_tokens_estimate=77)
    assert translator.usage is None
    assert translator.output_chars == 10
    assert translator.estimated_output_tokens == 3
    assert final(events)["usage"] == {"input_tokens": 77, "output_tokens": 3}


def test_empty_stream_still_has_a_valid_lifecycle(anthropic_sdk):
    _, events = run([])
    assert [e[0] for e in events] == ["message_start", "message_delta", "message_stop"]
    message = anthropic_sdk(events)
    assert message.content == [] and message.stop_reason == "end_turn"


def test_combined_content_and_finish_reason_in_one_chunk():
    _, events = run([chunk({"content": "done"}, "length")])
    assert shape(events) == [start(0, TEXT), delta(0, "text_delta", text="done"), stop(0)]
    assert final(events)["delta"]["stop_reason"] == "max_tokens"


@pytest.mark.parametrize(
    ("finish", "expected"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"),
     ("function_call", "tool_use"), ("content_filter", "refusal"), (None, "end_turn"),
     ("weird", "end_turn")],
)
def test_stop_reason_mapping(finish, expected):
    chunks = [chunk({"content": "x"})] + ([chunk({}, finish)] if finish else [])
    _, events = run(chunks)
    assert final(events)["delta"] == {"stop_reason": expected, "stop_sequence": None}


def test_stop_sequence_detected_from_vllm_stop_reason():
    chunks = [chunk({"content": "a"}), chunk({}, "stop", stop_reason="###")]
    _, events = run(chunks, stop_sequences=["###"])
    assert final(events)["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "###"}
    _, events = run([chunk({"content": "a"}), chunk({}, "stop", stop_reason=151645)])
    assert final(events)["delta"]["stop_reason"] == "end_turn"  # a token id is not a sequence


# ---------------------------------------------------------------- thinking and tools


def test_reasoning_text_tool_interleaving(anthropic_sdk):
    chunks = [
        chunk({"role": "assistant", "content": None, "reasoning_content": "Let me "}),
        chunk({"reasoning_content": "think."}),
        chunk({"content": "Checking."}),
        chunk({"reasoning": "Hmm, more."}),  # OpenRouter field name: a new thinking block
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "Bash", "arguments": ""}}]}),
        tool(0, '{"command":'),
        tool(0, ' "ls"}'),
        chunk({}, "tool_calls"),
        usage_chunk(),
    ]
    _, events = run(chunks)
    assert shape(events) == [
        start(0, THINKING),
        delta(0, "thinking_delta", thinking="Let me "),
        delta(0, "thinking_delta", thinking="think."),
        stop(0),
        start(1, TEXT),
        delta(1, "text_delta", text="Checking."),
        stop(1),
        start(2, THINKING),
        delta(2, "thinking_delta", thinking="Hmm, more."),
        stop(2),
        start(3, tool_block("call_1", "Bash")),
        delta(3, "input_json_delta", partial_json='{"command":'),
        delta(3, "input_json_delta", partial_json=' "ls"}'),
        stop(3),
    ]
    assert not any(e[1].get("delta", {}).get("type") == "signature_delta" for e in events)
    assert final(events)["delta"]["stop_reason"] == "tool_use"
    message = anthropic_sdk(events)
    assert [b.type for b in message.content] == ["thinking", "text", "thinking", "tool_use"]
    assert message.content[0].thinking == "Let me think."
    assert message.content[3].input == {"command": "ls"}


def test_two_sequential_parallel_tool_calls_stream_without_delay():
    chunks = [
        tool(0, "", id="call_a", name="get_weather"),
        tool(0, '{"city": "Paris"}'),
        tool(1, "", id="call_b", name="get_time"),
        tool(1, '{"tz": "CET"}'),
        chunk({}, "tool_calls"),
    ]
    translator = ChatStreamToMessages(model="m", input_tokens_estimate=1)
    per_chunk = [translator.feed(c) for c in chunks]
    # tool 1's start closes tool 0 at once, because tool 0's JSON is complete
    assert [e[0] for e in per_chunk[2]] == ["content_block_stop", "content_block_start"]
    assert per_chunk[3] == [delta(1, "input_json_delta", partial_json='{"tz": "CET"}')]


def test_interleaved_tool_arguments_are_buffered_until_they_can_be_placed(anthropic_sdk):
    chunks = [
        chunk({"role": "assistant", "content": "Two calls."}),
        tool(0, "", id="call_a", name="get_weather"),
        tool(1, "", id="call_b", name="get_time"),  # tool 0 has no arguments yet
        tool(0, '{"city":'),
        tool(1, '{"tz":'),
        tool(0, ' "Paris"}'),  # tool 0 complete → tool 1 flushes
        tool(1, ' "CET"}'),
        chunk({}, "tool_calls"),
        usage_chunk(),
    ]
    translator = ChatStreamToMessages(model="m", input_tokens_estimate=1, message_id="msg_test")
    per_chunk = [translator.feed(c) for c in chunks]
    assert per_chunk[2] == []  # buffered: tool 0 is open with incomplete JSON
    assert per_chunk[4] == []
    assert per_chunk[5] == [
        delta(1, "input_json_delta", partial_json=' "Paris"}'),
        stop(1),
        start(2, tool_block("call_b", "get_time")),
        delta(2, "input_json_delta", partial_json='{"tz":'),
    ]
    events = [e for group in per_chunk for e in group] + translator.finish()
    assert shape(events) == [
        start(0, TEXT),
        delta(0, "text_delta", text="Two calls."),
        stop(0),
        start(1, tool_block("call_a", "get_weather")),
        delta(1, "input_json_delta", partial_json='{"city":'),
        delta(1, "input_json_delta", partial_json=' "Paris"}'),
        stop(1),
        start(2, tool_block("call_b", "get_time")),
        delta(2, "input_json_delta", partial_json='{"tz":'),
        delta(2, "input_json_delta", partial_json=' "CET"}'),
        stop(2),
    ]
    message = anthropic_sdk(events)
    assert [(b.id, b.name, b.input) for b in message.content[1:]] == [
        ("call_a", "get_weather", {"city": "Paris"}),
        ("call_b", "get_time", {"tz": "CET"}),
    ]


def test_text_arriving_while_an_incomplete_tool_is_open_waits_its_turn():
    chunks = [
        tool(0, '{"a":', id="c0", name="f"),
        chunk({"content": "note"}),
        tool(0, " 1}"),
    ]
    _, events = run(chunks)
    assert shape(events) == [
        start(0, tool_block("c0", "f")),
        delta(0, "input_json_delta", partial_json='{"a":'),
        delta(0, "input_json_delta", partial_json=" 1}"),
        stop(0),
        start(1, TEXT),
        delta(1, "text_delta", text="note"),
        stop(1),
    ]


def test_incomplete_arguments_are_flushed_at_finish():
    chunks = [tool(0, '{"a": 1', id="c0", name="f"), tool(1, '{"b": 2}', id="c1", name="g")]
    _, events = run(chunks)
    assert shape(events) == [
        start(0, tool_block("c0", "f")),
        delta(0, "input_json_delta", partial_json='{"a": 1'),
        stop(0),
        start(1, tool_block("c1", "g")),
        delta(1, "input_json_delta", partial_json='{"b": 2}'),
        stop(1),
    ]


def test_whole_tool_call_in_one_chunk_and_missing_id_generated():
    _, events = run([tool(0, '{"q": "x"}', name="search"), chunk({}, "stop")])
    block = events[1][1]["content_block"]
    assert block["type"] == "tool_use" and block["name"] == "search"
    assert block["id"].startswith("toolu_")
    assert final(events)["delta"]["stop_reason"] == "tool_use"  # "stop" after tool calls


def test_name_arriving_on_a_later_delta():
    chunks = [tool(0, "", id="c0"), tool(0, '{"x":1}'), tool(0, "", name="late")]
    _, events = run(chunks)
    assert shape(events) == [
        start(0, tool_block("c0", "late")),
        delta(0, "input_json_delta", partial_json='{"x":1}'),
        stop(0),
    ]


def test_reused_index_with_a_new_id_is_a_new_call():
    chunks = [tool(0, '{"n":1}', id="c0", name="f"), tool(0, '{"n":2}', id="c1", name="f")]
    _, events = run(chunks)
    starts = [e[1]["content_block"]["id"] for e in events if e[0] == "content_block_start"]
    assert starts == ["c0", "c1"]


def test_shortened_tool_names_are_mapped_back(anthropic_sdk):
    long = "mcp__knowledge__" + "search_" * 12
    short = openai_tool_name(long)
    _, events = run([tool(0, "{}", id="c0", name=short)], tool_name_map={short: long})
    assert events[1][1]["content_block"]["name"] == long
    assert anthropic_sdk(events).content[0].name == long


# ---------------------------------------------------------------------------- errors


def test_error_mid_stream_is_terminal(anthropic_sdk):
    translator = ChatStreamToMessages(model="m", input_tokens_estimate=3)
    events = translator.feed(chunk({"content": "partial"}))
    err = translator.error_event("overloaded_error", "Overloaded")
    assert err == [("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})]
    assert translator.feed(chunk({"content": "more"})) == []
    assert translator.finish() == []
    assert translator.error_event("api_error", "again") == []
    with pytest.raises(anthropic.APIStatusError) as exc:
        anthropic_sdk(events + err)
    assert "Overloaded" in str(exc.value)


def test_upstream_error_object_in_the_stream_becomes_an_error_event():
    translator = ChatStreamToMessages(model="m", input_tokens_estimate=3)
    translator.feed(chunk({"content": "a"}))
    events = translator.feed({"error": {"message": "context too long", "type": "invalid_request_error"}})
    assert events == [("error", {"type": "error", "error": {"type": "api_error", "message": "context too long"}})]
    assert translator.done
