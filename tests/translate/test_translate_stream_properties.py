"""Property tests of both stream translators, judged by the official SDKs.

For any valid OpenAI chunk sequence (text / reasoning / tool-call deltas in any
interleaving, optional usage chunk) the Anthropic events must obey the block
lifecycle AND the anthropic SDK must rebuild exactly the content that was fed.
The reverse direction is checked the same way with the openai SDK.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a2agent.translate.anthropic_to_openai import ChatStreamToMessages
from a2agent.translate.openai_to_anthropic import MessagesStreamToChat
from a2agent.translate.reasons import finish_to_stop_reason, stop_to_finish_reason
from tests.translate.shapes import run_anthropic_sdk, run_openai_sdk_snapshot

EXAMPLES = int(os.environ.get("TRANSLATE_PROPERTY_EXAMPLES", "120"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])

text_piece = st.text(min_size=1, max_size=12)
json_scalar = st.one_of(st.integers(-1000, 1000), st.booleans(), st.none(), st.text(max_size=10))
json_object = st.dictionaries(
    st.text(min_size=1, max_size=6), st.one_of(json_scalar, st.lists(json_scalar, max_size=3)), max_size=4
)
tool_names = st.sampled_from(["Bash", "read_file", "get_weather", "mcp__srv__tool-x"])


def split(draw: st.DrawFn, text: str) -> list[str]:
    """Cut ``text`` into fragments at random points (empty fragments allowed)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=5)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@dataclass
class ToolSpec:
    id: str | None
    name: str
    args: dict[str, Any]


@st.composite
def openai_streams(draw: st.DrawFn) -> tuple[list[dict], dict[str, Any]]:
    """A valid OpenAI chunk sequence and what it means."""
    texts = draw(st.lists(text_piece, max_size=4))
    reasoning = draw(st.lists(text_piece, max_size=3))
    tools = [
        ToolSpec(draw(st.one_of(st.none(), st.just(f"call_{i}"))), draw(tool_names), draw(json_object))
        for i in range(draw(st.integers(0, 3)))
    ]
    streams: dict[Any, list[dict]] = {
        "text": [{"content": t} for t in texts],
        "reasoning": [{"reasoning_content": r} for r in reasoning],
    }
    for i, spec in enumerate(tools):
        style = draw(st.sampled_from([None, 2]))  # compact or indented JSON
        fragments = split(draw, json.dumps(spec.args, indent=style))
        first: dict[str, Any] = {"index": i, "type": "function", "function": {"name": spec.name, "arguments": fragments[0]}}
        if spec.id:
            first["id"] = spec.id
        streams[i] = [{"tool_calls": [first]}] + [
            {"tool_calls": [{"index": i, "function": {"arguments": f}}]} for f in fragments[1:]
        ]
    labels = [key for key, items in streams.items() for _ in items]
    order = draw(st.permutations(labels))
    cursors = {key: iter(items) for key, items in streams.items()}
    chunks = [_chunk({"role": "assistant", "content": ""})]
    for delta in (next(cursors[key]) for key in order):
        previous = chunks[-1]["choices"][0]["delta"]
        if len(chunks) > 1 and _mergeable(previous, delta) and draw(st.booleans()):
            _merge(previous, delta)  # several deltas in one chunk, as some upstreams send
        else:
            chunks.append(_chunk(dict(delta)))
    finish = draw(st.sampled_from(["stop", "tool_calls", "length", None]))
    if finish:
        chunks.append(_chunk({}, finish))
    usage = draw(st.one_of(st.none(), st.builds(
        lambda p, c, k: {"prompt_tokens": p + k, "completion_tokens": c, "total_tokens": p + k + c,
                         "prompt_tokens_details": {"cached_tokens": k}},
        st.integers(0, 5000), st.integers(0, 500), st.integers(0, 5000))))
    if usage:
        chunks.append({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage})
    # Anthropic blocks cannot come back in time: tool blocks follow first appearance
    appearance = [key for key in dict.fromkeys(order) if isinstance(key, int)]
    meaning = {"text": "".join(texts), "thinking": "".join(reasoning),
               "tools": [tools[i] for i in appearance],
               "finish": finish, "usage": usage}
    return chunks, meaning


def _mergeable(previous: dict, delta: dict) -> bool:
    if "content" in delta or "reasoning_content" in delta:
        return not (delta.keys() & previous.keys())
    indexes = {c["index"] for c in previous.get("tool_calls", [])}
    return delta["tool_calls"][0]["index"] not in indexes


def _merge(previous: dict, delta: dict) -> None:
    if "tool_calls" in delta:
        previous["tool_calls"] = previous.get("tool_calls", []) + delta["tool_calls"]
    else:
        previous.update(delta)


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def assert_lifecycle(events: list[tuple[str, dict]]) -> None:
    names = [name for name, _ in events]
    assert names[0] == "message_start"
    assert names[-2:] == ["message_delta", "message_stop"]
    assert names.count("message_start") == names.count("message_delta") == names.count("message_stop") == 1
    open_block: dict | None = None
    next_index = 0
    for name, data in events[1:-2]:
        assert data["type"] == name
        if name == "content_block_start":
            assert open_block is None, "two blocks open at once"
            assert data["index"] == next_index
            open_block, next_index = data, next_index + 1
        elif name == "content_block_delta":
            assert open_block is not None and data["index"] == open_block["index"]
            expected = {"text": "text_delta", "thinking": "thinking_delta", "tool_use": "input_json_delta"}
            assert data["delta"]["type"] == expected[open_block["content_block"]["type"]]
        else:
            assert name == "content_block_stop", name
            assert open_block is not None and data["index"] == open_block["index"]
            open_block = None
    assert open_block is None, "a block was never stopped"


@SETTINGS
@given(openai_streams())
def test_openai_chunks_become_a_valid_anthropic_stream(stream):
    chunks, meaning = stream
    translator = ChatStreamToMessages(model="claude-x", input_tokens_estimate=42)
    events = [e for chunk in chunks for e in translator.feed(chunk)] + translator.finish()
    assert_lifecycle(events)

    message = run_anthropic_sdk(events)
    blocks = message.content
    assert "".join(b.text for b in blocks if b.type == "text") == meaning["text"]
    assert "".join(b.thinking for b in blocks if b.type == "thinking") == meaning["thinking"]
    tool_blocks = [b for b in blocks if b.type == "tool_use"]
    assert [(b.name, b.input) for b in tool_blocks] == [(t.name, t.args) for t in meaning["tools"]]
    for block, spec in zip(tool_blocks, meaning["tools"], strict=False):
        assert block.id == spec.id if spec.id else block.id.startswith("toolu_")
    assert message.stop_reason == finish_to_stop_reason(meaning["finish"], has_tool_calls=bool(meaning["tools"]))
    if meaning["usage"]:
        u = meaning["usage"]
        cached = u["prompt_tokens_details"]["cached_tokens"]
        assert message.usage.input_tokens == u["prompt_tokens"] - cached
        assert message.usage.cache_read_input_tokens == cached
        assert message.usage.output_tokens == u["completion_tokens"]
    else:
        assert message.usage.input_tokens == 42


# ------------------------------------------------------------- Anthropic → OpenAI


@st.composite
def anthropic_streams(draw: st.DrawFn) -> tuple[list[tuple[str, dict]], dict[str, Any]]:
    """A valid Anthropic event sequence and what it means."""
    kinds = draw(st.lists(st.sampled_from(["text", "thinking", "tool_use"]), max_size=5))
    events: list[tuple[str, dict]] = [("message_start", {"type": "message_start", "message": {
        "id": "msg_1", "type": "message", "role": "assistant", "model": "c", "content": [],
        "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 11, "cache_read_input_tokens": 3, "output_tokens": 1}}})]
    meaning: dict[str, Any] = {"text": "", "thinking": "", "tools": []}
    for index, kind in enumerate(kinds):
        deltas, block = _block(draw, kind, index, meaning)
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        for delta in deltas:
            if draw(st.booleans()) and draw(st.booleans()):
                events.append(("ping", {"type": "ping"}))
            events.append(("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    stop_reason = draw(st.sampled_from(["end_turn", "tool_use", "max_tokens", "stop_sequence", "refusal"]))
    output = draw(st.integers(0, 999))
    events.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                                     "usage": {"output_tokens": output}}))
    events.append(("message_stop", {"type": "message_stop"}))
    meaning.update(stop_reason=stop_reason, output_tokens=output)
    return events, meaning


def _block(draw: st.DrawFn, kind: str, index: int, meaning: dict[str, Any]) -> tuple[list[dict], dict]:
    if kind == "text":
        pieces = draw(st.lists(text_piece, max_size=4))
        meaning["text"] += "".join(pieces)
        return [{"type": "text_delta", "text": p} for p in pieces], {"type": "text", "text": ""}
    if kind == "thinking":
        pieces = draw(st.lists(text_piece, max_size=3))
        meaning["thinking"] += "".join(pieces)
        deltas = [{"type": "thinking_delta", "thinking": p} for p in pieces]
        deltas.append({"type": "signature_delta", "signature": "c2ln"})
        return deltas, {"type": "thinking", "thinking": "", "signature": ""}
    args = json.dumps(draw(json_object))
    name = draw(tool_names)
    meaning["tools"].append((f"toolu_{index}", name, args))
    fragments = split(draw, args)
    block = {"type": "tool_use", "id": f"toolu_{index}", "name": name, "input": {}}
    return [{"type": "input_json_delta", "partial_json": f} for f in fragments], block


@SETTINGS
@given(anthropic_streams())
def test_anthropic_events_become_a_valid_openai_stream(stream):
    events, meaning = stream
    translator = MessagesStreamToChat(model="gpt-x", include_usage=True)
    chunks = [c for name, data in events for c in translator.feed(name, data)] + translator.finish()
    with_choices = [c for c in chunks if c["choices"]]
    assert with_choices[0]["choices"][0]["delta"]["role"] == "assistant"
    assert sum(1 for c in with_choices if c["choices"][0]["finish_reason"]) == 1
    assert with_choices[-1]["choices"][0]["finish_reason"] is not None
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == meaning["output_tokens"]

    snapshot = run_openai_sdk_snapshot(chunks)
    choice = snapshot.choices[0]
    assert (choice.message.content or "") == meaning["text"]
    assert (choice.message.model_extra or {}).get("reasoning_content", "") == meaning["thinking"]
    calls = choice.message.tool_calls or []
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == meaning["tools"]
    assert choice.finish_reason == stop_to_finish_reason(meaning["stop_reason"])
    assert snapshot.usage.prompt_tokens == 14
    assert snapshot.usage.prompt_tokens_details.cached_tokens == 3
