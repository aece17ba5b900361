"""Adapters for an OpenAI Responses caller (``POST /v1/responses``): translated to a Chat
Completions or Anthropic Messages channel, or passed through to a channel that speaks
Responses natively (protocol ``responses``). The state machines live in :mod:`a2agent.translate`.
"""

from __future__ import annotations

from typing import Any

import orjson

from a2agent.api.errors import ANTHROPIC, OPENAI, RESPONSES, ApiError
from a2agent.providers.adapters import (
    Adapter,
    MalformedUpstream,
    clamp_max_tokens,
    collect_openai_delta,
)
from a2agent.providers.sse import SSEEvent
from a2agent.providers.translating import loads_event, refused
from a2agent.routing.catalog import Route
from a2agent.translate import TranslationError
from a2agent.translate.chat_stream_to_responses import ChatStreamToResponses
from a2agent.translate.messages_stream_to_responses import MessagesStreamToResponses
from a2agent.translate.responses_stream import Event, ResponsesWriter, responses_sse_many
from a2agent.translate.responses_to_chat import (
    chat_response_to_responses,
    responses_request_to_chat,
)
from a2agent.translate.responses_to_messages import (
    messages_response_to_responses,
    responses_request_to_messages,
)
from a2agent.translate.usage import Usage, usage_from_openai

KEEPALIVE = b": keep-alive\n\n"  # an SSE comment: Codex and the SDKs skip it


class _TranslatedResponses(Adapter):
    """What the two translation lanes share: the stream's output is counted from what the
    Responses writer handed to the client (``output_chars`` / ``text_parts``), not from what
    the upstream sent, since tool calls are held back until the answer is complete."""

    caller = RESPONSES
    withholds_output = True
    writer: ResponsesWriter
    translated: dict[str, Any]  # the upstream request, translated once at construction

    def request_body(self, raw: bytes) -> bytes:
        return orjson.dumps(self.translated)

    def _relay(self, events: list[Event]) -> bytes:
        self.text_parts = self.writer.relayed
        self.output_chars = self.writer.relayed_chars
        return responses_sse_many(events)

    def keepalive(self) -> bytes:
        return KEEPALIVE


class ResponsesViaChat(_TranslatedResponses):
    """Responses caller → OpenAI Chat Completions channel."""

    upstream = OPENAI
    path = "/chat/completions"

    def __init__(self, body: dict[str, Any], *, reasoning: bool = False, **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        try:
            self.translated, self.tool_map = responses_request_to_chat(
                body, upstream_model=self.upstream_model, reasoning=reasoning, max_output=self.max_output)
        except TranslationError as exc:
            raise refused(exc) from None
        self.sm = ChatStreamToResponses(body, model=self.model, tool_map=self.tool_map)
        self.writer = self.sm.w

    def on_event(self, ev: SSEEvent) -> bytes:
        if not ev.data:
            return b""
        if ev.data == b"[DONE]":
            self.completed = True
            return b""
        chunk = loads_event(ev.data)
        if not isinstance(chunk, dict):
            return b""
        if isinstance(chunk.get("error"), dict) and not chunk.get("choices"):
            message = str(chunk["error"].get("message") or "upstream error")
            self.upstream_error = ("api_error", message)
            return self._relay(self.sm.fail("upstream_error", f"Upstream error: {message}"))
        events = self.sm.feed(chunk)
        self.usage = self.sm.usage
        return self._relay(events)

    def finish(self) -> bytes:
        return self._relay(self.sm.finish())

    def error_bytes(self, err_type: str, message: str) -> bytes:
        return self._relay(self.sm.fail(err_type, message))

    def response(self, data: dict[str, Any], raw: bytes) -> bytes:
        self.usage = usage_from_openai(data.get("usage"))
        for choice in data.get("choices") or ():
            self.output_chars += collect_openai_delta({"choices": [{"delta": choice.get("message") or {}}]},
                                                      self.text_parts)
        try:
            out = chat_response_to_responses(data, request=self.body, model=self.model, tool_map=self.tool_map)
        except (TranslationError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedUpstream(f"upstream answer could not be translated: {exc}") from None
        return orjson.dumps(out)


class ResponsesViaMessages(_TranslatedResponses):
    """Responses caller → Anthropic Messages channel."""

    upstream = ANTHROPIC
    path = "/v1/messages"

    def __init__(self, body: dict[str, Any], *, reasoning: bool = False, **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        try:
            self.translated, self.tool_map = responses_request_to_messages(
                body, upstream_model=self.upstream_model, reasoning=reasoning, max_output=self.max_output)
        except TranslationError as exc:
            raise refused(exc) from None
        self.sm = MessagesStreamToResponses(body, model=self.model, tool_map=self.tool_map)
        self.writer = self.sm.w

    def on_event(self, ev: SSEEvent) -> bytes:
        if ev.event is None or not ev.data or ev.event == "ping":
            return b""
        data = loads_event(ev.data)
        if not isinstance(data, dict):
            return b""
        if ev.event == "error":
            err = data.get("error") or {}
            message = str(err.get("message") or "error")
            self.upstream_error = (str(err.get("type") or "api_error"), message)
            code = "rate_limit_exceeded" if err.get("type") == "rate_limit_error" else "upstream_error"
            return self._relay(self.sm.fail(code, f"Upstream error: {message}"))
        if ev.event == "message_stop":
            self.completed = True
        events = self.sm.feed(ev.event, data)
        self.usage = self.sm.usage
        return self._relay(events)

    def finish(self) -> bytes:
        return self._relay(self.sm.finish())

    def error_bytes(self, err_type: str, message: str) -> bytes:
        return self._relay(self.sm.fail(err_type, message))

    def response(self, data: dict[str, Any], raw: bytes) -> bytes:
        from a2agent.translate.usage import usage_from_anthropic

        self.usage = usage_from_anthropic(data.get("usage"))
        for block in data.get("content") or ():
            for field in ("text", "thinking"):
                if isinstance(block.get(field), str):
                    self.text_parts.append(block[field])
                    self.output_chars += len(block[field])
        try:
            out = messages_response_to_responses(data, request=self.body, model=self.model,
                                                 tool_map=self.tool_map)
        except (TranslationError, KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedUpstream(f"upstream answer could not be translated: {exc}") from None
        return orjson.dumps(out)


def usage_from_responses(u: Any) -> Usage | None:
    """A Responses ``usage`` (``input_tokens`` includes the cached part) as our :class:`Usage`."""
    if not isinstance(u, dict) or "input_tokens" not in u:
        return None
    raw_details = u.get("input_tokens_details")
    details: dict[str, Any] = raw_details if isinstance(raw_details, dict) else {}
    cached = _int(details.get("cached_tokens"))
    return Usage(max(_int(u["input_tokens"]) - cached, 0), _int(u.get("output_tokens")), cached)


def _int(value: Any) -> int:
    return max(value, 0) if isinstance(value, int) and not isinstance(value, bool) else 0


TERMINAL = (b"response.completed", b"response.incomplete", b"response.failed")


class ResponsesPassthrough(Adapter):
    """Responses caller → a channel that speaks Responses natively: bytes relayed as they came,
    usage read from the terminal event."""

    caller = RESPONSES
    upstream = RESPONSES
    path = "/responses"

    def request_body(self, raw: bytes) -> bytes:
        limit = self.body.get("max_output_tokens")
        over = bool(self.max_output) and isinstance(limit, int) and limit > (self.max_output or 0)
        if self.body.get("model") == self.upstream_model and not over:
            return raw
        body = {**self.body, "model": self.upstream_model}
        clamp_max_tokens(body, self.max_output)
        return orjson.dumps(body)

    def keepalive(self) -> bytes:
        return KEEPALIVE

    def on_event(self, ev: SSEEvent) -> bytes:
        data = ev.data
        if not data or data == b"[DONE]":
            return ev.raw
        if b'"response.output_text.delta"' in data[:80] or b'"response.function_call_arguments.delta"' in data[:80]:
            self.output_chars += max(len(data) - 120, 0)  # cheap length accounting, no parse
            return ev.raw
        head = data[:60]
        if any(t in head for t in TERMINAL) or (ev.event or "") == "error" or b'"type":"error"' in head \
                or b'"type": "error"' in head:
            event = loads_event(data)
            if not isinstance(event, dict):
                return ev.raw
            kind = event.get("type")
            raw_response = event.get("response")
            response: dict[str, Any] = raw_response if isinstance(raw_response, dict) else {}
            self.usage = usage_from_responses(response.get("usage")) or self.usage
            if kind in ("response.completed", "response.incomplete"):
                self.completed = True
            elif kind == "response.failed":
                raw_err = response.get("error")
                err: dict[str, Any] = raw_err if isinstance(raw_err, dict) else {}
                self.upstream_error = (str(err.get("code") or "api_error"), str(err.get("message") or "failed"))
            elif kind == "error":
                self.upstream_error = (str(event.get("code") or "api_error"), str(event.get("message") or "error"))
        return ev.raw

    def error_bytes(self, err_type: str, message: str) -> bytes:
        return responses_sse_many([{"type": "response.failed", "sequence_number": 0, "response": {
            "id": "resp_failed", "object": "response", "status": "failed", "model": self.model, "output": [],
            "error": {"code": err_type, "message": message}, "usage": None}}])

    def response(self, data: dict[str, Any], raw: bytes) -> bytes:
        self.usage = usage_from_responses(data.get("usage"))
        for item in data.get("output") or ():
            for part in (item.get("content") or ()) if isinstance(item, dict) else ():
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    self.text_parts.append(part["text"])
                    self.output_chars += len(part["text"])
        return raw


def responses_adapter(ctx: Any, route: Route, **kwargs: Any) -> Adapter:
    ch = route.channel
    if ch.protocol == RESPONSES:
        return ResponsesPassthrough(ctx.body, **kwargs)
    if ch.protocol == OPENAI:
        return ResponsesViaChat(ctx.body, reasoning=ch.supports_reasoning, **kwargs)
    if ch.protocol == ANTHROPIC:
        return ResponsesViaMessages(ctx.body, reasoning=ch.supports_reasoning, **kwargs)
    raise ApiError(400, f"No translation from {RESPONSES} to {ch.protocol}.", code="unsupported_protocol")
