"""Adapters that translate between the caller's protocol and the channel's, both ways,
streams event by event (the state machines live in :mod:`a2agent.translate`)."""

from __future__ import annotations

from typing import Any

import orjson

from a2agent.api.errors import ANTHROPIC, OPENAI, ApiError
from a2agent.providers.adapters import (
    Adapter,
    MalformedUpstream,
    clamp_max_tokens,
    collect_openai_delta,
)
from a2agent.providers.sse import SSEEvent
from a2agent.routing.catalog import Route
from a2agent.translate import (
    ChatStreamToMessages,
    MessagesStreamToChat,
    TranslationError,
    build_tool_name_map,
    chat_request_to_messages,
    chat_response_to_messages,
    messages_request_to_chat,
    messages_response_to_chat,
    usage_from_anthropic,
    usage_from_openai,
)
from a2agent.translate.sse import OPENAI_DONE, anthropic_sse_many, openai_sse_many


def loads_event(data: bytes) -> Any:
    """One upstream SSE event's JSON; a malformed one is the upstream's fault."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise MalformedUpstream("upstream sent a malformed stream event") from None


def refused(exc: TranslationError) -> ApiError:
    """A request the translation cannot carry: the caller's 400, never the channel's fault."""
    return ApiError(400, str(exc), param=exc.param, code="unsupported_parameter")


class AnthropicViaOpenAI(Adapter):
    """Anthropic Messages caller → OpenAI Chat Completions channel."""

    caller = ANTHROPIC
    upstream = OPENAI
    path = "/chat/completions"

    def __init__(self, body: dict[str, Any], *, reasoning: bool = False, **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        try:
            self.translated = messages_request_to_chat(body, upstream_model=self.upstream_model,
                                                       reasoning=reasoning)
            clamp_max_tokens(self.translated, self.max_output)
        except TranslationError as exc:
            raise refused(exc) from None
        tools = body.get("tools")
        self.tool_names = build_tool_name_map(tools if isinstance(tools, list) else [])
        stops = body.get("stop_sequences")
        self.stops = stops if isinstance(stops, list) else None
        self.sm = ChatStreamToMessages(model=self.model, input_tokens_estimate=self.input_estimate,
                                       tool_name_map=self.tool_names, stop_sequences=self.stops)

    def request_body(self, raw: bytes) -> bytes:
        return orjson.dumps(self.translated)

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
            err = chunk["error"]
            self.upstream_error = ("api_error", str(err.get("message") or "upstream error"))
        self.output_chars += collect_openai_delta(chunk, self.text_parts)
        events = self.sm.feed(chunk)
        if chunk.get("usage"):
            self.usage = usage_from_openai(chunk["usage"])
        return anthropic_sse_many(events)

    def finish(self) -> bytes:
        return anthropic_sse_many(self.sm.finish())

    def error_bytes(self, err_type: str, message: str) -> bytes:
        return anthropic_sse_many(self.sm.error_event(err_type, message))

    def response(self, data: dict[str, Any], raw: bytes) -> bytes:
        self.usage = usage_from_openai(data.get("usage"))
        for choice in data.get("choices") or ():
            message = {"choices": [{"delta": choice.get("message") or {}}]}
            self.output_chars += collect_openai_delta(message, self.text_parts)
        try:
            message = chat_response_to_messages(data, model=self.model, tool_name_map=self.tool_names,
                                                stop_sequences=self.stops)
        except (TranslationError, KeyError, TypeError, ValueError) as exc:
            raise MalformedUpstream(f"upstream answer could not be translated: {exc}") from None
        return orjson.dumps(message)


class OpenAIViaAnthropic(Adapter):
    """OpenAI Chat Completions caller → Anthropic Messages channel."""

    caller = OPENAI
    upstream = ANTHROPIC
    path = "/v1/messages"

    def __init__(self, body: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(body, **kwargs)
        try:
            self.translated = chat_request_to_messages(body, upstream_model=self.upstream_model)
            clamp_max_tokens(self.translated, self.max_output)
        except TranslationError as exc:
            raise refused(exc) from None
        opts = body.get("stream_options")
        include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
        self.sm = MessagesStreamToChat(model=self.model, include_usage=include_usage)

    def request_body(self, raw: bytes) -> bytes:
        return orjson.dumps(self.translated)

    def on_event(self, ev: SSEEvent) -> bytes:
        if ev.event is None or not ev.data or ev.event == "ping":
            return b""
        data = loads_event(ev.data)
        if not isinstance(data, dict):
            return b""
        if ev.event == "error":
            err = data.get("error") or {}
            self.upstream_error = (str(err.get("type") or "api_error"), str(err.get("message") or "error"))
        elif ev.event == "message_stop":
            self.completed = True
        elif ev.event == "content_block_delta":
            delta = data.get("delta") or {}
            for field in ("text", "thinking", "partial_json"):
                value = delta.get(field)
                if isinstance(value, str):
                    self.text_parts.append(value)
                    self.output_chars += len(value)
        chunks = self.sm.feed(ev.event, data)
        self.usage = self.sm.usage
        out = openai_sse_many(chunks)
        if self.completed:
            out += openai_sse_many(self.sm.finish()) + OPENAI_DONE
        return out

    def finish(self) -> bytes:
        return b""  # emitted when message_stop arrived

    def error_bytes(self, err_type: str, message: str) -> bytes:
        return openai_sse_many([self.sm.error_chunk(message, err_type)])

    def response(self, data: dict[str, Any], raw: bytes) -> bytes:
        self.usage = usage_from_anthropic(data.get("usage"))
        for block in data.get("content") or ():
            for field in ("text", "thinking"):
                if isinstance(block.get(field), str):
                    self.text_parts.append(block[field])
                    self.output_chars += len(block[field])
        try:
            completion = messages_response_to_chat(data, model=self.model)
        except (TranslationError, KeyError, TypeError, ValueError) as exc:
            raise MalformedUpstream(f"upstream answer could not be translated: {exc}") from None
        return orjson.dumps(completion)


def translating_adapter(ctx: Any, route: Route, **kwargs: Any) -> Adapter:
    if ctx.protocol == ANTHROPIC and route.channel.protocol == OPENAI:
        return AnthropicViaOpenAI(ctx.body, reasoning=route.channel.supports_reasoning, **kwargs)
    if ctx.protocol == OPENAI and route.channel.protocol == ANTHROPIC:
        return OpenAIViaAnthropic(ctx.body, **kwargs)
    raise ApiError(500, f"No translation from {ctx.protocol} to {route.channel.protocol}.")
