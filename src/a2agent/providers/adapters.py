"""Per (caller protocol, upstream protocol) adapters: request body, stream events, responses.

Passthrough adapters forward the upstream's bytes untouched and only read usage out of them;
translating adapters (see :mod:`a2agent.providers.translating`) run the pure state machines
of :mod:`a2agent.translate`.
"""

from __future__ import annotations

from typing import Any

import orjson

from a2agent.api.errors import ANTHROPIC, OPENAI, RESPONSES, stream_error_event
from a2agent.providers.sse import SSEEvent
from a2agent.translate.usage import Usage, usage_from_anthropic, usage_from_openai


class Adapter:
    """Base: what the relay needs from a protocol pairing."""

    caller: str = OPENAI
    upstream: str = OPENAI
    path: str = "/chat/completions"
    # the adapter may hold upstream output back from the client until the answer is complete
    # (Responses lanes: tool calls): on a broken stream the upstream's own output count then
    # covers output the client never got, so only what the adapter counted as relayed is charged
    withholds_output: bool = False

    def __init__(self, body: dict[str, Any], *, model: str, upstream_model: str, input_estimate: int,
                 max_output: int | None = None) -> None:
        self.body = body
        self.model = model
        self.upstream_model = upstream_model
        self.input_estimate = input_estimate
        self.max_output = max_output  # the model's largest answer (catalogue), when known
        self.usage: Usage | None = None
        self.output_chars = 0  # characters of generated text/arguments relayed (for estimates)
        self.text_parts: list[str] = []  # generated text, kept in memory only, for token counting
        self.completed = False  # the upstream's terminal event was seen
        self.upstream_error: tuple[str, str] | None = None  # (type, message) of an error event
        self.payload = b""  # the upstream request body, encoded before any channel slot is taken

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    def request_body(self, raw: bytes) -> bytes:
        raise NotImplementedError

    def on_event(self, ev: SSEEvent) -> bytes:
        raise NotImplementedError

    def finish(self) -> bytes:
        return b""

    def error_bytes(self, err_type: str, message: str) -> bytes:
        return stream_error_event(self.caller, err_type, message)

    def keepalive(self) -> bytes:
        """Sent while the upstream is silent, so client idle watchdogs stay quiet."""
        return KEEPALIVE[self.caller]

    def response(self, data: dict[str, Any], raw: bytes) -> bytes:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        return {}


KEEPALIVE = {
    ANTHROPIC: b'event: ping\ndata: {"type": "ping"}\n\n',
    OPENAI: b": keep-alive\n\n",  # an SSE comment: OpenAI clients skip it
    RESPONSES: b": keep-alive\n\n",
}


def clamp_max_tokens(body: dict[str, Any], limit: int | None) -> bool:
    """Lower ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens`` above the model's
    maximum output to it (an upstream answers 400 otherwise); keeps a thinking budget below
    it. True when the body changed."""
    if not limit:
        return False
    changed = False
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            body[name] = limit
            changed = True
    thinking = body.get("thinking")
    if changed and isinstance(thinking, dict) and isinstance(thinking.get("budget_tokens"), int):
        top = body.get("max_tokens")
        if isinstance(top, int) and thinking["budget_tokens"] >= top:
            if top - 1 >= 1024:
                body["thinking"] = {**thinking, "budget_tokens": top - 1}
            else:
                del body["thinking"]
    return changed


def _text_len(value: Any) -> int:
    return len(value) if isinstance(value, str) else 0


def _collect(parts: list[str], *values: Any) -> int:
    n = 0
    for v in values:
        if isinstance(v, str) and v:
            parts.append(v)
            n += len(v)
    return n


def collect_openai_delta(chunk: dict[str, Any], parts: list[str]) -> int:
    """Keep the generated text of an OpenAI chunk (for counting); returns its length."""
    n = 0
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        n += _collect(parts, delta.get("content"), delta.get("reasoning_content"), delta.get("reasoning"))
        for tc in delta.get("tool_calls") or ():
            fn = tc.get("function") or {}
            n += _collect(parts, fn.get("name"), fn.get("arguments"))
    return n


class OpenAIPassthrough(Adapter):
    caller = OPENAI
    upstream = OPENAI
    path = "/chat/completions"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opts = self.body.get("stream_options")
        self.caller_wants_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))

    def request_body(self, raw: bytes) -> bytes:
        body = self.body
        changed = False
        if self.max_output and any(isinstance(body.get(k), int) and body[k] > self.max_output
                                   for k in ("max_tokens", "max_completion_tokens")):
            body = dict(body)
            changed = clamp_max_tokens(body, self.max_output)
        if body.get("model") != self.upstream_model:
            body = {**body, "model": self.upstream_model}
            changed = True
        if self.stream and not self.caller_wants_usage:
            opts = body.get("stream_options")
            body = {**body, "stream_options": {**(opts if isinstance(opts, dict) else {}), "include_usage": True}}
            changed = True
        return orjson.dumps(body) if changed else raw

    def on_event(self, ev: SSEEvent) -> bytes:
        data = ev.data
        if not data:
            return ev.raw
        if data == b"[DONE]":
            self.completed = True
            return ev.raw
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise MalformedUpstream("upstream sent a malformed stream chunk") from None
        if not isinstance(chunk, dict):
            return ev.raw
        if "error" in chunk and not chunk.get("choices"):
            err = chunk.get("error") or {}
            self.upstream_error = (
                str(err.get("type") or "api_error"),
                str(err.get("message") or "upstream error"),
            )
            return ev.raw
        choices = chunk.get("choices")
        if choices:
            self.output_chars += collect_openai_delta(chunk, self.text_parts)
        usage = chunk.get("usage")
        if usage:
            self.usage = usage_from_openai(usage)
            if not choices and not self.caller_wants_usage:
                return b""  # the usage chunk we asked for on the caller's behalf
        return ev.raw

    def response(self, data: dict[str, Any], raw: bytes) -> bytes:
        self.usage = usage_from_openai(data.get("usage"))
        for choice in data.get("choices") or ():
            self.output_chars += collect_openai_delta({"choices": [{"delta": choice.get("message") or {}}]},
                                                      self.text_parts)
        return raw


class OpenAIEmbeddings(Adapter):
    """``POST /v1/embeddings`` passed through to an OpenAI-protocol channel (input tokens only)."""

    caller = OPENAI
    upstream = OPENAI
    path = "/embeddings"

    @property
    def stream(self) -> bool:
        return False

    def request_body(self, raw: bytes) -> bytes:
        if self.body.get("model") == self.upstream_model:
            return raw
        return orjson.dumps({**self.body, "model": self.upstream_model})

    def response(self, data: dict[str, Any], raw: bytes) -> bytes:
        self.usage = usage_from_openai(data.get("usage"))
        return raw


class AnthropicPassthrough(Adapter):
    caller = ANTHROPIC
    upstream = ANTHROPIC
    path = "/v1/messages"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_usage: dict[str, Any] = {}

    def request_body(self, raw: bytes) -> bytes:
        pair = self.body.get("temperature") is not None and self.body.get("top_p") is not None
        over = bool(self.max_output) and isinstance(self.body.get("max_tokens"), int) and \
            self.body["max_tokens"] > (self.max_output or 0)
        if self.body.get("model") == self.upstream_model and not pair and not over:
            return raw
        body = {**self.body, "model": self.upstream_model}
        if pair:  # recent Anthropic models refuse temperature and top_p together: temperature wins
            del body["top_p"]
        clamp_max_tokens(body, self.max_output)
        return orjson.dumps(body)

    def on_event(self, ev: SSEEvent) -> bytes:
        name = ev.event
        if name == "content_block_delta":
            # cheap length accounting without a full parse of every delta
            self.output_chars += max(len(ev.data) - 80, 0)
            return ev.raw
        if name in ("message_start", "message_delta", "message_stop", "error"):
            try:
                data = orjson.loads(ev.data) if ev.data else {}
            except orjson.JSONDecodeError:
                raise MalformedUpstream("upstream sent a malformed stream event") from None
            if name == "message_start":
                self._start_usage = dict((data.get("message") or {}).get("usage") or {})
                self.usage = usage_from_anthropic(self._start_usage)
            elif name == "message_delta":
                merged = {**self._start_usage, **{k: v for k, v in (data.get("usage") or {}).items() if v is not None}}
                self.usage = usage_from_anthropic(merged)
            elif name == "message_stop":
                self.completed = True
            else:
                err = data.get("error") or {}
                self.upstream_error = (
                    str(err.get("type") or "api_error"),
                    str(err.get("message") or "upstream error"),
                )
        return ev.raw

    def response(self, data: dict[str, Any], raw: bytes) -> bytes:
        self.usage = usage_from_anthropic(data.get("usage"))
        for block in data.get("content") or ():
            self.output_chars += _text_len(block.get("text"))
        return raw


class MalformedUpstream(Exception):
    """The upstream's body or stream could not be parsed."""
