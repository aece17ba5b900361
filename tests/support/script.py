"""Scripted responses for the fake upstream, plus the deterministic token rules.

A :class:`Script` describes what the fake upstream answers to ONE request (or
``repeat`` requests).  The same script works for both wire protocols; the
protocol-specific rendering lives in ``wire_openai`` / ``wire_anthropic``.

Token rules (documented so that gateway tests can predict the numbers):

* input tokens  = ``max(1, len(compact JSON of the prompt part of the body) // 4)``
  where the prompt part is ``{"system": ..., "messages": ..., "tools": ...}``
  (keys only when present in the request body, sorted keys).  The same rule
  backs ``/v1/messages/count_tokens``.
* output tokens = words(text) + words(reasoning) + per tool call
  ``max(1, len(arguments JSON) // 4)``, at least 1.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import orjson

DEFAULT_TEXT = "Hello from upstream"

# Stream-fault positions: an int K means "after K complete SSE events were
# sent".  ``True`` means the default position below.
DEFAULT_FAULT_AT = 2

FaultAt = Union[bool, int, None]

# endpoint names used by Script.endpoint and RecordedRequest.endpoint
CHAT = "chat"  # POST .../chat/completions  (OpenAI)
MESSAGES = "messages"  # POST .../messages  (Anthropic)
COUNT_TOKENS = "count_tokens"  # POST .../messages/count_tokens
MODELS = "models"  # GET .../models
EMBEDDINGS = "embeddings"  # POST .../embeddings
RESPONSES = "responses"  # POST .../responses  (OpenAI Responses API)
GENERATION_ENDPOINTS = (CHAT, MESSAGES, RESPONSES)


@dataclass
class ToolCall:
    """One tool call emitted by the model.

    ``arguments`` is a dict (serialised compactly) or a raw string (sent
    verbatim, may be deliberately invalid JSON).  ``chunks`` optionally gives
    the exact argument fragments to stream (they must join to the argument
    string).  ``id`` defaults to ``call_<n>`` (OpenAI) / ``toolu_<n>``
    (Anthropic)."""

    name: str
    arguments: Union[dict, str] = field(default_factory=dict)
    id: Optional[str] = None
    chunks: Optional[list[str]] = None

    @property
    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return orjson.dumps(self.arguments).decode()

    def argument_fragments(self) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        return split_evenly(self.arguments_json, 3)

    def input_object(self) -> Any:
        """The Anthropic ``tool_use.input`` value (an object)."""
        if isinstance(self.arguments, dict):
            return self.arguments
        try:
            value = orjson.loads(self.arguments)
        except orjson.JSONDecodeError:
            return {}
        return value if isinstance(value, dict) else {}


@dataclass
class Usage:
    """Usage override; ``None`` fields keep the computed default.

    Semantics are Anthropic's: ``input_tokens`` is the UNCACHED input.  The
    OpenAI rendering reports ``prompt_tokens = input + cache_read + cache_write``
    and ``prompt_tokens_details.cached_tokens = cache_read``."""

    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    cache_read_tokens: Optional[int] = None
    cache_write_tokens: Optional[int] = None
    reasoning_tokens: Optional[int] = None


@dataclass
class ResolvedUsage:
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:  # OpenAI notion: includes cached tokens
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass
class Script:
    """What the upstream answers.  Every field is optional.

    Content
      text            answer text (str), or explicit stream chunks (list[str]).
                      ``None`` -> the upstream's default text, unless tool calls
                      are given (then no text).
      tool_calls      list of ToolCall (or dicts {name, arguments, id}).
      reasoning       reasoning/thinking text (str or list of chunks).
      reasoning_field OpenAI delta/message field for reasoning
                      ("reasoning_content" like DeepSeek/vLLM, or "reasoning").
      signature       Anthropic thinking signature (default derived from text).
      finish_reason   OpenAI finish reason (default stop / tool_calls).
      stop_reason     Anthropic stop reason (default end_turn / tool_use).  If
                      only one of the two is given it is mapped to the other.
      stop_sequence   Anthropic stop_sequence value.
      usage           Usage override (a dict whose keys are all Usage field
                      names counts as one), or any other dict, emitted VERBATIM
                      as the usage object of whichever protocol answers.
      omit_usage      never report usage (no usage key / no usage chunk).
      response_model  model name in the response (default: echo the request).
      ping            Anthropic: send a ping event after the first block start.
      interleave_tool_args  OpenAI stream: interleave argument fragments of
                      parallel tool calls (index 0,1,0,1,...).
      raw_body        non-stream: send these bytes/str (or dict -> JSON) as the
                      body with ``status`` (default 200).
      raw_frames      stream: send exactly these SSE frames (str/bytes each,
                      written as separate chunks; faults still apply by index).
      headers         extra response headers.
      chunk_delay     seconds between stream events.
      fragment_frames write each SSE event in two TCP writes (split mid-line).

    Faults (K = number of complete SSE events sent before the fault; ``True``
    means K=2.  Non-stream responses treat the body as one event split in half.)
      status                 HTTP error status with a protocol-correct error body.
      error_type/error_message/error_code   override the error fields.
      retry_after            value of the ``retry-after`` header.
      reset_before_headers   read the request, then RST the connection.
      stall_before_headers   seconds to wait before answering.
      reset_mid_stream       K: RST the connection after K events.
      stall_mid_stream       seconds to stall after ``stall_after`` events.
      stall_after            K for stall_mid_stream (default 1).
      malformed_json         non-stream: 200 with a broken JSON body; stream:
                             K: replace event K's data with broken JSON.
      truncated_sse          K: after K events send half an event and end the
                             body cleanly (no [DONE] / message_stop).
      unknown_event          K: insert an unknown event before event K
                             (Anthropic ``event: future_thing``; OpenAI an SSE
                             comment + an Azure-style ``choices: []`` chunk, i.e.
                             two extra events).
    Anthropic streams count every event, including the ``ping`` sent after the
    first content_block_start (disable with ``ping=False``).
      error_event_mid_stream K: after K events send an error event and end.

    Selection
      model     only used for requests asking for this model.
      endpoint  "chat" / "messages" / "count_tokens" / "models" / "embeddings"
                (str or list).  Default: chat or messages.
      match     callable(RecordedRequest) -> bool.
      repeat    how many requests this script answers before it is used up.
    """

    text: Union[str, list[str], None] = None
    tool_calls: list[Union[ToolCall, dict]] = field(default_factory=list)
    reasoning: Union[str, list[str], None] = None
    reasoning_field: str = "reasoning_content"
    signature: Optional[str] = None
    finish_reason: Optional[str] = None
    stop_reason: Optional[str] = None
    stop_sequence: Optional[str] = None
    usage: Union[Usage, dict, None] = None
    omit_usage: bool = False
    response_model: Optional[str] = None
    ping: bool = True
    interleave_tool_args: bool = False
    raw_body: Union[bytes, str, dict, None] = None
    raw_frames: Optional[list[Union[str, bytes]]] = None
    headers: dict[str, str] = field(default_factory=dict)
    chunk_delay: float = 0.0
    fragment_frames: bool = False

    status: Optional[int] = None
    error_type: Optional[str] = None
    error_message: Optional[str] = None
    error_code: Optional[str] = None
    retry_after: Union[str, int, float, None] = None
    reset_before_headers: bool = False
    stall_before_headers: float = 0.0
    reset_mid_stream: FaultAt = None
    stall_mid_stream: float = 0.0
    stall_after: int = 1
    malformed_json: FaultAt = None
    truncated_sse: FaultAt = None
    unknown_event: FaultAt = None
    error_event_mid_stream: FaultAt = None

    model: Optional[str] = None
    endpoint: Union[str, list[str], None] = None
    match: Optional[Callable[[Any], bool]] = None
    repeat: int = 1

    def __post_init__(self) -> None:
        self.tool_calls = [tc if isinstance(tc, ToolCall) else ToolCall(**tc) for tc in self.tool_calls]
        if isinstance(self.usage, Usage) or self.usage is None:
            pass
        elif isinstance(self.usage, dict) and set(self.usage) <= {f.name for f in dataclasses.fields(Usage)}:
            # A dict with only Usage field names is an override, not raw usage.
            self.usage = Usage(**self.usage)

    # --- selection -------------------------------------------------------
    def accepts(self, endpoint: str, model: Optional[str], request: Any) -> bool:
        if self.endpoint is None:
            if endpoint not in GENERATION_ENDPOINTS:
                return False
        elif isinstance(self.endpoint, str):
            if endpoint != self.endpoint:
                return False
        elif endpoint not in self.endpoint:
            return False
        if self.model is not None and model != self.model:
            return False
        if self.match is not None and not self.match(request):
            return False
        return True

    # --- content helpers -------------------------------------------------
    def text_chunks(self, default_text: str) -> list[str]:
        text = self.text
        if text is None:
            text = "" if self.tool_calls else default_text
        if isinstance(text, list):
            return list(text)
        return split_words(text)

    def full_text(self, default_text: str) -> str:
        return "".join(self.text_chunks(default_text))

    def reasoning_chunks(self) -> list[str]:
        if self.reasoning is None:
            return []
        if isinstance(self.reasoning, list):
            return list(self.reasoning)
        return split_words(self.reasoning)

    def full_reasoning(self) -> Optional[str]:
        if self.reasoning is None:
            return None
        return "".join(self.reasoning_chunks())

    def openai_finish_reason(self) -> str:
        if self.finish_reason:
            return self.finish_reason
        if self.stop_reason:
            return _A2O_STOP.get(self.stop_reason, "stop")
        return "tool_calls" if self.tool_calls else "stop"

    def anthropic_stop_reason(self) -> str:
        if self.stop_reason:
            return self.stop_reason
        if self.finish_reason:
            return _O2A_STOP.get(self.finish_reason, "end_turn")
        return "tool_use" if self.tool_calls else "end_turn"

    def thinking_signature(self) -> str:
        if self.signature is not None:
            return self.signature
        reasoning = self.full_reasoning() or ""
        return "sig_" + format(abs(hash_str(reasoning)), "016x")

    def has_stream_faults(self) -> bool:
        return any(
            x not in (None, False)
            for x in (
                self.reset_mid_stream,
                self.malformed_json,
                self.truncated_sse,
                self.unknown_event,
                self.error_event_mid_stream,
            )
        ) or bool(self.stall_mid_stream)

    # --- (de)serialisation for the HTTP control API ------------------------
    def to_dict(self) -> dict:
        if self.match is not None:
            raise ValueError("a Script with a match callable cannot be serialised")
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value == f.default or (f.default_factory is not dataclasses.MISSING and value == f.default_factory()):  # type: ignore[misc]
                continue
            if f.name == "tool_calls":
                value = [dataclasses.asdict(tc) for tc in value]
            elif isinstance(value, Usage):
                value = {k: v for k, v in dataclasses.asdict(value).items() if v is not None}
            elif isinstance(value, bytes):
                value = value.decode("latin-1")
            elif f.name == "raw_frames":
                value = [v.decode("latin-1") if isinstance(v, bytes) else v for v in value]
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Script":
        names = {f.name for f in dataclasses.fields(cls)} - {"match"}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown Script fields: {sorted(unknown)}")
        return cls(**data)


_O2A_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_A2O_STOP = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}

_WORD_SPLIT = re.compile(r"(?=\s)")


def split_words(text: str) -> list[str]:
    """"Hello from upstream" -> ["Hello", " from", " upstream"] (joins back)."""
    if not text:
        return []
    parts = [p for p in _WORD_SPLIT.split(text) if p]
    return parts


def split_evenly(text: str, pieces: int) -> list[str]:
    if len(text) <= 1 or pieces <= 1:
        return [text]
    step = max(1, -(-len(text) // pieces))
    return [text[i : i + step] for i in range(0, len(text), step)]


def hash_str(text: str) -> int:
    """Deterministic (unlike hash()) 64-bit FNV-1a."""
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def count_words(text: Optional[str]) -> int:
    return len(text.split()) if text else 0


def estimate_input_tokens(body: Any) -> int:
    """Deterministic prompt-size rule shared by generation and count_tokens."""
    if not isinstance(body, dict):
        return 1
    prompt = {k: body[k] for k in ("system", "messages", "tools") if k in body}
    try:
        size = len(orjson.dumps(prompt, option=orjson.OPT_SORT_KEYS))
    except TypeError:
        size = len(repr(prompt))
    return max(1, size // 4)


def estimate_output_tokens(text: str, reasoning: Optional[str], tool_calls: list[ToolCall]) -> tuple[int, int]:
    """Return (output_tokens, reasoning_tokens)."""
    reasoning_tokens = count_words(reasoning)
    total = count_words(text) + reasoning_tokens
    for tc in tool_calls:
        total += max(1, len(tc.arguments_json) // 4)
    return max(1, total), reasoning_tokens


def resolve_usage(script: Script, body: Any, default_text: str) -> ResolvedUsage:
    output, reasoning_tokens = estimate_output_tokens(
        script.full_text(default_text), script.full_reasoning(), script.tool_calls  # type: ignore[arg-type]
    )
    resolved = ResolvedUsage(
        input_tokens=estimate_input_tokens(body), output_tokens=output, reasoning_tokens=reasoning_tokens
    )
    if isinstance(script.usage, Usage):
        for f in dataclasses.fields(Usage):
            value = getattr(script.usage, f.name)
            if value is not None:
                setattr(resolved, f.name, value)
    return resolved


def fault_position(value: FaultAt) -> Optional[int]:
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_FAULT_AT
    return int(value)
