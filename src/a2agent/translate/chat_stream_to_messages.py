"""OpenAI chat completion chunks → Anthropic Messages SSE events.

Anthropic content blocks never interleave: exactly one block is open at a
time, and indexes are 0, 1, 2, … in start order. OpenAI deltas for text,
reasoning and several tool calls can interleave freely, so the translator
treats each of them as a *stream* (``"text"``, ``"thinking"``, or a tool-call
index) and lets one stream at a time own the open block.

Switching rule (buffering of interleaved tool arguments):

* The open block is *closable* when it is text or thinking, or when it is a
  tool call whose arguments so far form one complete JSON object.
* Data for the open stream is relayed at once.
* Data for another stream closes the open block if it is closable and opens a
  block for the new stream. If the open block is a tool call whose JSON is
  still incomplete (e.g. arguments of tool 0 may still arrive after tool 1
  started), the other stream's data is *buffered* and the stream waits in a
  FIFO queue; as soon as the open tool's JSON completes, it is closed and the
  waiting streams are opened in turn, each flushing its buffer in one delta.
* ``finish()`` closes the open block and flushes every waiting stream.
* A tool call whose name has not arrived yet waits without blocking others.
* Fragments for a tool block that was already closed can only follow a
  complete JSON object, so they cannot be valid; they are dropped.

Consequence: the usual sequential OpenAI pattern streams with no delay, and
only genuinely interleaved arguments are delayed until they can be placed.

``message_delta``/``message_stop`` are only produced by :meth:`finish`:
OpenAI sends ``finish_reason`` in one chunk and the usage in a later chunk
with ``choices: []``, and the final usage must go into ``message_delta``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._json import as_obj, is_complete_object
from .ids import new_message_id, new_tool_use_id
from .reasons import finish_to_stop_reason, matched_stop_sequence
from .toolnames import original_tool_name
from .usage import Usage, usage_from_openai

Event = tuple[str, dict[str, Any]]
StreamKey = str | int  # "text", "thinking", or the internal key of a tool call
CHARS_PER_TOKEN = 4


@dataclass
class _Tool:
    id: str | None = None
    name: str | None = None
    args: str = ""  # everything received (for the completeness check)
    pending: str = ""  # received but not yet relayed
    block: int | None = None  # Anthropic index once opened
    closed: bool = False


@dataclass
class _Open:
    key: StreamKey
    index: int


@dataclass
class _State:
    started: bool = False
    done: bool = False
    next_index: int = 0
    open: _Open | None = None
    waiting: list[StreamKey] = field(default_factory=list)
    pending_text: dict[str, str] = field(default_factory=lambda: {"text": "", "thinking": ""})
    tools: dict[int, _Tool] = field(default_factory=dict)  # by internal key
    aliases: dict[int, int] = field(default_factory=dict)  # OpenAI index → internal key
    finish_reason: str | None = None
    stop_sequence: str | None = None
    usage: Usage | None = None
    output_chars: int = 0


class ChatStreamToMessages:
    """Feed parsed OpenAI chunks, get Anthropic ``(event_name, data)`` pairs back."""

    def __init__(
        self,
        *,
        model: str,
        input_tokens_estimate: int,
        message_id: str | None = None,
        tool_name_map: dict[str, str] | None = None,
        stop_sequences: list[str] | None = None,
    ) -> None:
        self.model = model
        self.message_id = message_id or new_message_id()
        self.input_tokens_estimate = max(int(input_tokens_estimate), 0)
        self._names = tool_name_map
        self._stops = stop_sequences
        self._s = _State()

    # ------------------------------------------------------------------ public

    @property
    def usage(self) -> Usage | None:
        """Usage as reported by the upstream; ``None`` if it never reported any."""
        return self._s.usage

    @property
    def output_chars(self) -> int:
        """Characters of text, thinking and tool arguments received so far."""
        return self._s.output_chars

    output_text_chars = output_chars  # the name the API edge was briefed with

    @property
    def estimated_output_tokens(self) -> int:
        """A rough token count of the output (ceil(chars / 4)) for when usage never came."""
        return -(-self._s.output_chars // CHARS_PER_TOKEN)

    @property
    def done(self) -> bool:
        return self._s.done

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        """Translate one parsed OpenAI chunk."""
        if self._s.done or not isinstance(chunk, dict):
            return []
        if isinstance(chunk.get("error"), dict):
            error = chunk["error"]
            return self.error_event("api_error", str(error.get("message") or "upstream error"))
        events = self._start()
        if usage := usage_from_openai(chunk.get("usage")):
            self._s.usage = usage
        choices = chunk.get("choices")
        for choice in choices if isinstance(choices, list) else []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                events.extend(self._choice(choice))
        return events

    def finish(self) -> list[Event]:
        """Close everything after ``[DONE]`` (or the end of the upstream stream)."""
        if self._s.done:
            return []
        events = self._start()
        events.extend(self._close_open())
        for key in list(self._s.waiting):
            events.extend(self._open(key))
            events.extend(self._close_open())
        self._s.waiting.clear()
        events.append(("message_delta", self._message_delta()))
        events.append(("message_stop", {"type": "message_stop"}))
        self._s.done = True
        return events

    def error_event(self, err_type: str, message: str) -> list[Event]:
        """A terminal Anthropic ``error`` event; nothing is emitted after it."""
        if self._s.done:
            return []
        self._s.done = True
        return [("error", {"type": "error", "error": {"type": err_type, "message": message}})]

    # --------------------------------------------------------------- internals

    def _start(self) -> list[Event]:
        if self._s.started:
            return []
        self._s.started = True
        message: dict[str, Any] = {
            "id": self.message_id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": self.input_tokens_estimate,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
                "output_tokens": 1,
            },
        }
        return [("message_start", {"type": "message_start", "message": message})]

    def _choice(self, choice: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        delta = as_obj(choice.get("delta"))
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            events.extend(self._data("thinking", reasoning))
        content = delta.get("content")
        if isinstance(content, str) and content:
            events.extend(self._data("text", content))
        calls = delta.get("tool_calls")
        for position, call in enumerate(calls if isinstance(calls, list) else []):
            if isinstance(call, dict):
                events.extend(self._tool_delta(call, position))
        if choice.get("finish_reason"):
            self._s.finish_reason = choice["finish_reason"]
            self._s.stop_sequence = matched_stop_sequence(choice, self._stops)
        return events

    def _tool_key(self, call: dict[str, Any], position: int) -> int:
        """Internal key of the tool call a delta belongs to.

        Keyed by the OpenAI ``index``; a delta that reuses an index with a
        *different* id starts a new call (some upstreams send every call as index 0).
        """
        s = self._s
        index = call.get("index")
        index = index if isinstance(index, int) else position
        call_id = call.get("id") if isinstance(call.get("id"), str) and call["id"] else None
        key = s.aliases.get(index)
        if key is None or (call_id and s.tools[key].id and s.tools[key].id != call_id):
            key = s.aliases[index] = len(s.tools)
            s.tools[key] = _Tool()
        tool = s.tools[key]
        if tool.block is None and call_id:  # the id is fixed once the block is open
            tool.id = call_id
        return key

    def _tool_delta(self, call: dict[str, Any], position: int) -> list[Event]:
        index = self._tool_key(call, position)
        tool = self._s.tools[index]
        function = as_obj(call.get("function"))
        if tool.block is None and isinstance(function.get("name"), str) and function["name"]:
            tool.name = original_tool_name(function["name"], self._names)
        fragment = function.get("arguments")
        return self._data(index, fragment if isinstance(fragment, str) else "")

    def _data(self, key: StreamKey, data: str) -> list[Event]:
        """Buffer ``data`` for stream ``key``, relay what can be relayed now."""
        s = self._s
        if isinstance(key, int):
            tool = s.tools[key]
            if tool.closed:
                return []  # only possible after a complete JSON object: cannot be valid
        s.output_chars += len(data)
        if isinstance(key, int):
            tool.args += data
            tool.pending += data
        else:
            s.pending_text[key] += data
        if s.open is not None and s.open.key == key:
            events = self._flush(key)
        else:
            events = []
            if key not in s.waiting:
                s.waiting.append(key)
        events.extend(self._advance())
        return events

    def _advance(self) -> list[Event]:
        """Open waiting streams for as long as the open block may be closed."""
        events: list[Event] = []
        while self._s.waiting and self._closable():
            key = next((k for k in self._s.waiting if self._openable(k)), None)
            if key is None:
                break
            events.extend(self._close_open())
            events.extend(self._open(key))
        return events

    def _closable(self) -> bool:
        current = self._s.open
        if current is None or not isinstance(current.key, int):
            return True
        return is_complete_object(self._s.tools[current.key].args)

    def _openable(self, key: StreamKey) -> bool:
        return not isinstance(key, int) or self._s.tools[key].name is not None

    def _open(self, key: StreamKey) -> list[Event]:
        s = self._s
        if key in s.waiting:
            s.waiting.remove(key)
        index = s.next_index
        s.next_index += 1
        s.open = _Open(key, index)
        if isinstance(key, int):
            tool = s.tools[key]
            tool.block = index
            tool.id = tool.id or new_tool_use_id()
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": tool.id,
                "name": tool.name or "",
                "input": {},
            }
        elif key == "thinking":
            block = {"type": "thinking", "thinking": "", "signature": ""}
        else:
            block = {"type": "text", "text": ""}
        start = {"type": "content_block_start", "index": index, "content_block": block}
        return [("content_block_start", start), *self._flush(key)]

    def _flush(self, key: StreamKey) -> list[Event]:
        s = self._s
        assert s.open is not None
        if isinstance(key, int):
            data, s.tools[key].pending = s.tools[key].pending, ""
            delta = {"type": "input_json_delta", "partial_json": data}
        else:
            data, s.pending_text[key] = s.pending_text[key], ""
            delta = (
                {"type": "thinking_delta", "thinking": data}
                if key == "thinking"
                else {"type": "text_delta", "text": data}
            )
        if not data:
            return []
        event = {"type": "content_block_delta", "index": s.open.index, "delta": delta}
        return [("content_block_delta", event)]

    def _close_open(self) -> list[Event]:
        s = self._s
        if s.open is None:
            return []
        index, key = s.open.index, s.open.key
        if isinstance(key, int):
            s.tools[key].closed = True
        s.open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _message_delta(self) -> dict[str, Any]:
        s = self._s
        has_tools = any(t.block is not None for t in s.tools.values())
        stop_reason = finish_to_stop_reason(s.finish_reason, has_tool_calls=has_tools)
        stop_sequence = s.stop_sequence if stop_reason == "end_turn" else None
        if stop_sequence is not None:
            stop_reason = "stop_sequence"
        if s.usage is not None:
            usage = {
                "input_tokens": s.usage.input_tokens,
                "cache_creation_input_tokens": s.usage.cache_write_tokens,
                "cache_read_input_tokens": s.usage.cache_read_tokens,
                "output_tokens": s.usage.output_tokens,
            }
        else:  # the upstream never reported usage: keep the estimates
            usage = {
                "input_tokens": self.input_tokens_estimate,
                "output_tokens": self.estimated_output_tokens,
            }
        return {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
            "usage": usage,
        }
