"""The Responses stream writer the Chat and Messages stream translators drive (pure).

It numbers every event (``sequence_number``), gives every item its ``output_index`` and every
part its ``item_id`` / ``content_index``, closes every item with ``response.output_item.done``
(the only event Codex takes items from), keeps ``function_call.arguments`` a JSON string, and
ends the stream with ``response.completed`` / ``response.incomplete`` / ``response.failed``.

Calls of ``custom`` and ``tool_search`` tools arrive from the upstream as JSON arguments of a
plain function; their Responses payload (the raw ``input`` string, the arguments object) is
only known when the arguments are complete, so it is sent whole when they close (items are
still announced in ``output_index`` order: the SDKs append items as they are announced).

The writer also keeps what it handed to the client, for billing a stream that breaks: text and
reasoning deltas as they are sent, a call only once its item is done (the translators close
calls when the upstream's answer is complete, so a broken stream's calls never reach the client
as anything it can use, and Codex never runs them).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from .responses_items import FUNCTION, ToolRef, call_item, new_id, response_object

Event = dict[str, Any]
# error codes Codex acts on (context_length_exceeded / insufficient_quota: not retried;
# rate_limit_exceeded: "try again in …"); anything else is a server_error
FAILURE_CODES = frozenset({"server_error", "rate_limit_exceeded", "context_length_exceeded",
                           "insufficient_quota", "invalid_prompt"})


def responses_sse(event: Event) -> bytes:
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def responses_sse_many(events: Iterable[Event]) -> bytes:
    return b"".join(responses_sse(e) for e in events)


@dataclass
class _Item:
    kind: str  # message | reasoning | call
    item_id: str
    index: int = -1  # output_index
    parts: list[str] = field(default_factory=list)
    ref: ToolRef | None = None
    call_id: str = ""
    encrypted: str | None = None


class ResponsesWriter:
    def __init__(self, request: dict[str, Any], *, model: str) -> None:
        self.request = request
        self.model = model
        self.response_id = new_id("resp")
        self.seq = 0
        self.next_index = 0
        self.done: dict[int, dict[str, Any]] = {}  # output_index -> finished item
        self.started = False
        self.finished = False
        self.relayed: list[str] = []  # generated text the client was sent (counted, never logged)
        self.relayed_chars = 0

    def _relayed(self, *texts: str) -> None:
        for text in texts:
            if text:
                self.relayed.append(text)
                self.relayed_chars += len(text)

    def _ev(self, kind: str, **fields: Any) -> Event:
        event = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return event

    def _response(self, status: str, **kw: Any) -> dict[str, Any]:
        output = [self.done[i] for i in sorted(self.done)]
        return response_object(self.request, model=self.model, response_id=self.response_id, status=status,
                               output=output, **kw)

    def start(self) -> list[Event]:
        if self.started:
            return []
        self.started = True
        snapshot = self._response("in_progress")
        return [self._ev("response.created", response=snapshot),
                self._ev("response.in_progress", response=snapshot)]

    # ---- message ----------------------------------------------------------------------------
    def open_message(self) -> tuple[_Item, list[Event]]:
        item = _Item("message", new_id("msg"), self.next_index)
        self.next_index += 1
        return item, self.start() + [
            self._ev("response.output_item.added", output_index=item.index,
                     item={"id": item.item_id, "type": "message", "status": "in_progress", "role": "assistant",
                           "content": []}),
            self._ev("response.content_part.added", item_id=item.item_id, output_index=item.index,
                     content_index=0, part={"type": "output_text", "text": "", "annotations": [],
                                            "logprobs": []}),
        ]

    def text_delta(self, item: _Item, text: str) -> list[Event]:
        item.parts.append(text)
        self._relayed(text)
        return [self._ev("response.output_text.delta", item_id=item.item_id, output_index=item.index,
                         content_index=0, delta=text, logprobs=[])]

    # ---- reasoning --------------------------------------------------------------------------
    def open_reasoning(self) -> tuple[_Item, list[Event]]:
        item = _Item("reasoning", new_id("rs"), self.next_index)
        self.next_index += 1
        return item, self.start() + [
            self._ev("response.output_item.added", output_index=item.index,
                     item={"id": item.item_id, "type": "reasoning", "summary": [], "content": [],
                           "encrypted_content": None, "status": "in_progress"}),
        ]

    def reasoning_delta(self, item: _Item, text: str) -> list[Event]:
        item.parts.append(text)
        self._relayed(text)
        return [self._ev("response.reasoning_text.delta", item_id=item.item_id, output_index=item.index,
                         content_index=0, delta=text)]

    # ---- tool calls -------------------------------------------------------------------------
    def open_call(self, ref: ToolRef, call_id: str) -> tuple[_Item, list[Event]]:
        prefix = {"custom": "ctc", "tool_search": "tsc"}.get(ref.kind, "fc")
        item = _Item("call", new_id(prefix), self.next_index, ref=ref, call_id=call_id)
        self.next_index += 1
        if ref.kind == FUNCTION:
            added: dict[str, Any] = {"id": item.item_id, "type": "function_call", "status": "in_progress",
                                     "call_id": call_id, "name": ref.name, "arguments": ""}
            if ref.namespace:
                added["namespace"] = ref.namespace
        else:  # the payload is announced complete when the call closes (see the module docstring)
            added = {**call_item(ref, call_id, "{}", item.item_id), "status": "in_progress"}
            if ref.kind == "custom":
                added["input"] = ""
        return item, self.start() + [self._ev("response.output_item.added", output_index=item.index, item=added)]

    def arguments_delta(self, item: _Item, text: str) -> list[Event]:
        item.parts.append(text)
        if item.ref is None or item.ref.kind != FUNCTION:
            return []
        return [self._ev("response.function_call_arguments.delta", item_id=item.item_id,
                         output_index=item.index, delta=text)]

    # ---- closing ----------------------------------------------------------------------------
    def close(self, item: _Item) -> list[Event]:
        text = "".join(item.parts)
        final: dict[str, Any]
        if item.kind == "message":
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            final = {"id": item.item_id, "type": "message", "status": "completed", "role": "assistant",
                     "content": [part]}
            events = [
                self._ev("response.output_text.done", item_id=item.item_id, output_index=item.index,
                         content_index=0, text=text, logprobs=[]),
                self._ev("response.content_part.done", item_id=item.item_id, output_index=item.index,
                         content_index=0, part=part),
            ]
        elif item.kind == "reasoning":
            final = {"id": item.item_id, "type": "reasoning", "summary": [],
                     "content": [{"type": "reasoning_text", "text": text}] if text else [],
                     "encrypted_content": item.encrypted, "status": "completed"}
            events = [self._ev("response.reasoning_text.done", item_id=item.item_id, output_index=item.index,
                               content_index=0, text=text)] if text else []
        else:
            assert item.ref is not None
            final = call_item(item.ref, item.call_id, text or "{}", item.item_id)
            events = self._close_call(item, final)
            self._relayed(item.ref.name, text)
        self.done[item.index] = final
        events.append(self._ev("response.output_item.done", output_index=item.index, item=final))
        return events

    def _close_call(self, item: _Item, final: dict[str, Any]) -> list[Event]:
        if final["type"] == "function_call":
            return [self._ev("response.function_call_arguments.done", item_id=item.item_id,
                             output_index=item.index, name=final["name"], arguments=final["arguments"])]
        if final["type"] == "custom_tool_call":
            return [
                self._ev("response.custom_tool_call_input.delta", item_id=item.item_id, output_index=item.index,
                         delta=final["input"]),
                self._ev("response.custom_tool_call_input.done", item_id=item.item_id, output_index=item.index,
                         input=final["input"]),
            ]
        return []

    # ---- the end ----------------------------------------------------------------------------
    def complete(self, usage: dict[str, Any], *, incomplete_reason: str | None = None) -> list[Event]:
        self.finished = True
        events = self.start()
        if incomplete_reason:
            return events + [self._ev("response.incomplete", response=self._response(
                "incomplete", usage=usage, incomplete_reason=incomplete_reason))]
        return events + [self._ev("response.completed", response=self._response("completed", usage=usage))]

    def fail(self, code: str, message: str) -> list[Event]:
        """The terminal event of a stream that broke after it started (never a bare ``error``:
        Codex ignores those and re-runs the turn)."""
        if self.finished:
            return []
        self.finished = True
        code = code if code in FAILURE_CODES else "server_error"
        return self.start() + [self._ev("response.failed", response=self._response(
            "failed", error={"code": code, "message": message}))]
