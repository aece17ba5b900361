"""Chat Completions stream chunks → Responses stream events (pure state machine).

``feed(chunk)`` takes one parsed ``chat.completion.chunk`` and returns the events it produces;
``finish()`` is called after ``[DONE]`` and closes every open item and the response
(``response.incomplete`` for a ``length`` stop). Reasoning (``reasoning_content`` /
``reasoning``) becomes a ``reasoning`` item, text a ``message``, each ``tool_calls[i]`` a call
item of the kind its tool maps back to. Items are closed in ``output_index`` order.
"""

from __future__ import annotations

from typing import Any

from .responses_items import ToolMap, new_id, usage_to_responses
from .responses_stream import Event, ResponsesWriter, _Item
from .usage import Usage, usage_from_openai


class ChatStreamToResponses:
    def __init__(self, request: dict[str, Any], *, model: str, tool_map: ToolMap) -> None:
        self.w = ResponsesWriter(request, model=model)
        self.tool_map = tool_map
        self.reasoning: _Item | None = None
        self.message: _Item | None = None
        self.calls: dict[int, _Item] = {}
        self.pending_args: dict[int, list[str]] = {}  # arguments before the call's name arrived
        self.pending_ids: dict[int, str] = {}
        self.open: list[_Item] = []
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.reasoning_tokens = 0

    def feed(self, chunk: dict[str, Any]) -> list[Event]:
        events = self.w.start()
        usage = chunk.get("usage")
        if isinstance(usage, dict) and usage:
            self.usage = usage_from_openai(usage) or self.usage
            details = usage.get("completion_tokens_details")
            if isinstance(details, dict) and isinstance(details.get("reasoning_tokens"), int):
                self.reasoning_tokens = details["reasoning_tokens"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(thought, str) and thought:
                if self.reasoning is None:
                    self.reasoning, opened = self.w.open_reasoning()
                    self.open.append(self.reasoning)
                    events += opened
                events += self.w.reasoning_delta(self.reasoning, thought)
            text = delta.get("content")
            if isinstance(text, str) and text:
                events += self._close_reasoning()
                if self.message is None:
                    self.message, opened = self.w.open_message()
                    self.open.append(self.message)
                    events += opened
                events += self.w.text_delta(self.message, text)
            for tc in delta.get("tool_calls") or ():
                events += self._tool_delta(tc)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return events

    def _close_reasoning(self) -> list[Event]:
        item, self.reasoning = self.reasoning, None
        if item is None:
            return []
        self.open.remove(item)
        return self.w.close(item)

    def _close_message(self) -> list[Event]:
        item, self.message = self.message, None
        if item is None:
            return []
        self.open.remove(item)
        return self.w.close(item)

    def _tool_delta(self, tc: dict[str, Any]) -> list[Event]:
        events = self._close_reasoning() + self._close_message()
        index = tc.get("index", len(self.calls)) if isinstance(tc.get("index", 0), int) else 0
        fn = tc.get("function") or {}
        if isinstance(tc.get("id"), str) and tc["id"]:
            self.pending_ids.setdefault(index, tc["id"])
        args = fn.get("arguments")
        item = self.calls.get(index)
        if item is None:
            name = fn.get("name")
            if not isinstance(name, str) or not name:
                if isinstance(args, str):
                    self.pending_args.setdefault(index, []).append(args)
                return events
            call_id = self.pending_ids.get(index) or new_id("call")
            item, opened = self.w.open_call(self.tool_map.ref(name), call_id)
            self.calls[index] = item
            self.open.append(item)
            events += opened
            for early in self.pending_args.pop(index, []):
                events += self.w.arguments_delta(item, early)
        if isinstance(args, str) and args:
            events += self.w.arguments_delta(item, args)
        return events

    def finish(self) -> list[Event]:
        """After ``[DONE]``: close the open items, then the response."""
        events = self.w.start()
        for item in sorted(self.open, key=lambda it: it.index):
            events += self.w.close(item)
        self.open.clear()
        self.reasoning = self.message = None
        reason = "max_output_tokens" if self.finish_reason == "length" else (
            "content_filter" if self.finish_reason == "content_filter" else None)
        return events + self.w.complete(usage_to_responses(self.usage, self.reasoning_tokens),
                                        incomplete_reason=reason)

    def fail(self, code: str, message: str) -> list[Event]:
        return self.w.fail(code, message)
