"""Anthropic Messages SSE events → OpenAI chat completion chunks.

* The first chunk carries ``delta.role = "assistant"`` (and ``content: ""``).
* ``text_delta`` → ``delta.content``; ``thinking_delta`` → ``delta.reasoning_content``
  (the DeepSeek/vLLM convention; strict OpenAI consumers ignore it);
  ``signature_delta``, ``citations_delta``, ``redacted_thinking`` → nothing.
* ``tool_use`` start → ``tool_calls: [{index: k, id, type, function: {name,
  arguments: ""}}]``; each ``input_json_delta`` → ``{index: k, function:
  {arguments: fragment}}``. ``k`` counts tool calls only (0, 1, …).
* ``message_delta`` → the finish chunk (``delta: {}`` + ``finish_reason``);
  :meth:`finish` sends it if the upstream never did, then (``include_usage``)
  one chunk with ``choices: []`` and the usage, as OpenAI does before ``[DONE]``.
* An Anthropic ``error`` event → :meth:`error_chunk`, the object the OpenAI
  SDKs raise on when it arrives as a ``data:`` line.
"""

from __future__ import annotations

import time
from typing import Any

from ._json import as_obj, dumps
from .ids import new_completion_id
from .reasons import stop_to_finish_reason
from .usage import Usage, usage_from_anthropic, usage_to_openai


class MessagesStreamToChat:
    """Feed Anthropic ``(event, data)`` pairs, get OpenAI chunk dicts back."""

    def __init__(
        self,
        *,
        model: str,
        include_usage: bool,
        completion_id: str | None = None,
        created: int | None = None,
    ) -> None:
        self.model = model
        self.include_usage = include_usage
        self.completion_id = completion_id or new_completion_id()
        self.created = created if created is not None else int(time.time())
        self._role_sent = False
        self._finish_sent = False
        self._done = False
        self._stop_reason: str | None = None
        self._tool_indexes: dict[int, int] = {}  # Anthropic block index → tool_calls index
        self._start_usage: dict[str, Any] = {}
        self._delta_usage: dict[str, Any] = {}
        self._output_chars = 0

    # ------------------------------------------------------------------ public

    @property
    def usage(self) -> Usage | None:
        """Usage reported by the upstream (message_start merged with message_delta)."""
        if not self._start_usage and not self._delta_usage:
            return None
        merged = dict(self._start_usage)
        merged.update({k: v for k, v in self._delta_usage.items() if v is not None})
        return usage_from_anthropic(merged)

    @property
    def output_chars(self) -> int:
        """Characters of text, thinking and tool arguments relayed so far."""
        return self._output_chars

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: str, data: dict[str, Any]) -> list[dict[str, Any]]:
        """Translate one Anthropic SSE event (name and parsed data)."""
        if self._done or not isinstance(data, dict):
            return []
        kind = data.get("type") or event
        if kind == "error":
            error = as_obj(data.get("error"))
            self._done = True
            return [self.error_chunk(str(error.get("message") or "upstream error"),
                                     str(error.get("type") or "api_error"))]
        handler = _HANDLERS.get(kind)
        return handler(self, data) if handler else []

    def finish(self) -> list[dict[str, Any]]:
        """The finish chunk (if not yet sent) and, with ``include_usage``, the usage chunk."""
        if self._done:
            return []
        self._done = True
        chunks = []
        if not self._finish_sent:
            chunks.append(self._finish_chunk())
        if self.include_usage and (usage := self.usage) is not None:
            chunks.append(self._chunk(None, usage=usage_to_openai(usage)))
        return chunks

    def error_chunk(self, message: str, err_type: str = "server_error") -> dict[str, Any]:
        """An OpenAI error object to send as a ``data:`` line mid-stream."""
        return {"error": {"message": message, "type": err_type, "param": None, "code": None}}

    # --------------------------------------------------------------- internals

    def _chunk(
        self,
        delta: dict[str, Any] | None,
        finish_reason: str | None = None,
        usage: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
        }
        if delta is not None:
            if not self._role_sent:
                delta = {"role": "assistant", **delta}
                self._role_sent = True
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            chunk["choices"].append(choice)
        if self.include_usage:
            chunk["usage"] = usage
        return chunk

    def _finish_chunk(self) -> dict[str, Any]:
        self._finish_sent = True
        return self._chunk({}, finish_reason=stop_to_finish_reason(self._stop_reason))

    def _on_message_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        message = as_obj(data.get("message"))
        if isinstance(message.get("usage"), dict):
            self._start_usage = dict(message["usage"])
        if self._role_sent:
            return []
        return [self._chunk({"content": ""})]

    def _on_block_start(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        block = as_obj(data.get("content_block"))
        kind = block.get("type")
        if kind == "text" and block.get("text"):
            return [self._content("content", block["text"])]
        if kind == "thinking" and block.get("thinking"):
            return [self._content("reasoning_content", block["thinking"])]
        if kind != "tool_use":
            return []
        k = self._tool_indexes[data.get("index", -1)] = len(self._tool_indexes)
        tool_input = block.get("input")
        arguments = dumps(tool_input) if isinstance(tool_input, dict) and tool_input else ""
        self._output_chars += len(arguments)
        call = {
            "index": k,
            "id": block.get("id") or "",
            "type": "function",
            "function": {"name": block.get("name") or "", "arguments": arguments},
        }
        return [self._chunk({"tool_calls": [call]})]

    def _content(self, field: str, text: str) -> dict[str, Any]:
        self._output_chars += len(text)
        return self._chunk({field: text})

    def _on_block_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        delta = as_obj(data.get("delta"))
        kind = delta.get("type")
        if kind == "text_delta" and delta.get("text"):
            return [self._content("content", delta["text"])]
        if kind == "thinking_delta" and delta.get("thinking"):
            return [self._content("reasoning_content", delta["thinking"])]
        if kind == "input_json_delta" and delta.get("partial_json"):
            k = self._tool_indexes.get(data.get("index", -1))
            if k is None:
                return []
            self._output_chars += len(delta["partial_json"])
            call = {"index": k, "function": {"arguments": delta["partial_json"]}}
            return [self._chunk({"tool_calls": [call]})]
        return []

    def _on_message_delta(self, data: dict[str, Any]) -> list[dict[str, Any]]:
        delta = as_obj(data.get("delta"))
        if isinstance(data.get("usage"), dict):
            self._delta_usage.update(data["usage"])
        if delta.get("stop_reason") is None or self._finish_sent:
            return []
        self._stop_reason = delta["stop_reason"]
        return [self._finish_chunk()]


_HANDLERS = {
    "message_start": MessagesStreamToChat._on_message_start,
    "content_block_start": MessagesStreamToChat._on_block_start,
    "content_block_delta": MessagesStreamToChat._on_block_delta,
    "message_delta": MessagesStreamToChat._on_message_delta,
}
