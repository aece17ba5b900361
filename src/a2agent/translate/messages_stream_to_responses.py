"""Anthropic Messages stream events → Responses stream events (pure state machine).

``feed(event_name, data)`` takes one parsed Messages event; ``finish()`` is called after
``message_stop``. Each content block becomes one item, closed at its ``content_block_stop``
except tool calls, which close only when the whole message arrived (Codex runs a call at its
``output_item.done``: a stream that breaks later and is retried must not run it twice):
``text`` → ``message``, ``thinking`` → ``reasoning`` whose ``encrypted_content`` is the block's
signature (``signature_delta``) so it can go back upstream byte for byte, ``redacted_thinking``
→ ``reasoning`` with ``encrypted_content = "redacted:<data>"``, ``tool_use`` → the call item
its tool maps back to. ``max_tokens`` stops end in ``response.incomplete``.
"""

from __future__ import annotations

from typing import Any

from ._json import dumps
from .responses_items import ToolMap, usage_to_responses
from .responses_stream import Event, ResponsesWriter, _Item
from .responses_to_messages import REDACTED
from .usage import Usage, usage_from_anthropic


class MessagesStreamToResponses:
    def __init__(self, request: dict[str, Any], *, model: str, tool_map: ToolMap) -> None:
        self.w = ResponsesWriter(request, model=model)
        self.tool_map = tool_map
        self.blocks: dict[int, _Item] = {}
        self.stop_reason: str | None = None
        self._usage: dict[str, Any] = {}

    @property
    def usage(self) -> Usage | None:
        return usage_from_anthropic(self._usage) if self._usage else None

    def feed(self, name: str, data: dict[str, Any]) -> list[Event]:
        events = self.w.start()
        if name == "message_start":
            usage = (data.get("message") or {}).get("usage")
            if isinstance(usage, dict):
                self._usage = dict(usage)
        elif name == "content_block_start":
            events += self._start(int(data.get("index") or 0), data.get("content_block") or {})
        elif name == "content_block_delta":
            item = self.blocks.get(int(data.get("index") or 0))
            delta = data.get("delta") or {}
            if item is not None:
                events += self._delta(item, delta)
        elif name == "content_block_stop":
            index = int(data.get("index") or 0)
            item = self.blocks.get(index)
            if item is not None and item.kind != "call":  # calls close with the response (below)
                del self.blocks[index]
                events += self.w.close(item)
        elif name == "message_delta":
            delta = data.get("delta") or {}
            if delta.get("stop_reason"):
                self.stop_reason = str(delta["stop_reason"])
            usage = data.get("usage")
            if isinstance(usage, dict):
                self._usage.update({k: v for k, v in usage.items() if v is not None})
        return events

    def _start(self, index: int, block: dict[str, Any]) -> list[Event]:
        kind = block.get("type")
        if kind == "text":
            item, events = self.w.open_message()
            if block.get("text"):
                events += self.w.text_delta(item, str(block["text"]))
        elif kind == "thinking":
            item, events = self.w.open_reasoning()
            if block.get("thinking"):
                events += self.w.reasoning_delta(item, str(block["thinking"]))
            if block.get("signature"):
                item.encrypted = str(block["signature"])
        elif kind == "redacted_thinking":
            item, events = self.w.open_reasoning()
            item.encrypted = REDACTED + str(block.get("data") or "")
        elif kind == "tool_use":
            item, events = self.w.open_call(self.tool_map.ref(str(block.get("name") or "")),
                                            str(block.get("id") or ""))
            initial = block.get("input")
            if isinstance(initial, dict) and initial:  # some upstreams send the whole input here
                events += self.w.arguments_delta(item, dumps(initial))
        else:
            return []  # server tool blocks and future block types: nothing a Responses client can use
        self.blocks[index] = item
        return events

    def _delta(self, item: _Item, delta: dict[str, Any]) -> list[Event]:
        kind = delta.get("type")
        if kind == "text_delta" and isinstance(delta.get("text"), str) and item.kind == "message":
            return self.w.text_delta(item, delta["text"])
        if kind == "thinking_delta" and isinstance(delta.get("thinking"), str) and item.kind == "reasoning":
            return self.w.reasoning_delta(item, delta["thinking"])
        if kind == "signature_delta" and isinstance(delta.get("signature"), str):
            item.encrypted = (item.encrypted or "") + delta["signature"]
            return []
        if kind == "input_json_delta" and isinstance(delta.get("partial_json"), str) and item.kind == "call":
            return self.w.arguments_delta(item, delta["partial_json"]) if delta["partial_json"] else []
        return []

    def finish(self) -> list[Event]:
        """After ``message_stop``: close what is still open, then the response."""
        events = self.w.start()
        for index in sorted(self.blocks):
            events += self.w.close(self.blocks[index])
        self.blocks.clear()
        incomplete = self.stop_reason in ("max_tokens", "model_context_window_exceeded")
        return events + self.w.complete(usage_to_responses(self.usage),
                                        incomplete_reason="max_output_tokens" if incomplete else None)

    def fail(self, code: str, message: str) -> list[Event]:
        return self.w.fail(code, message)
