"""Caller speaks OpenAI Chat Completions, upstream speaks Anthropic Messages.

* :func:`chat_request_to_messages` — request body.
* :func:`messages_response_to_chat` — non-streaming response.
* :class:`MessagesStreamToChat` — streaming response (see ``messages_stream_to_chat``).

Request choices (beyond those in ``_o2a_content``):

* ``n > 1``, ``logprobs``/``top_logprobs``, non-empty ``logit_bias``, audio
  output, ``web_search_options``, legacy ``functions``/``function_call`` and
  non-function tools have no Anthropic equivalent → :class:`TranslationError`.
* Dropped as hints that do not change what is asked: ``seed``,
  ``presence_penalty``, ``frequency_penalty``, ``service_tier``, ``store``,
  ``prediction``, ``prompt_cache_key``, ``stream_options`` (the stream
  translator's ``include_usage`` takes its place), tool ``strict``.
* ``max_tokens``: ``max_completion_tokens``, else ``max_tokens``, else
  ``default_max_tokens`` (Anthropic requires one).
* ``temperature`` is clamped to Anthropic's 0–1; ``top_p`` is sent only without
  ``temperature`` (recent Anthropic models refuse the pair); both are dropped when
  thinking is on (Anthropic rejects them then).
* ``reasoning_effort`` → ``thinking`` budget (minimal 1024, low 2048, medium
  8192, high 16384, xhigh 32768; ``none`` → no thinking). Without an explicit
  max, ``max_tokens`` grows by the budget; with one, the budget is capped so that
  up to 4096 tokens (half of a small max) are left for the answer, and a max too
  small for the 1024 minimum is a :class:`TranslationError`.
  ``adaptive_thinking=True`` (newer Claude models) sends ``{"type":"adaptive"}``
  plus ``output_config.effort`` instead (the caller adds the effort beta header).
* ``response_format`` ``json_object``/``json_schema`` → an instruction appended
  to the system prompt (works on every Claude model without a beta header).
* ``metadata.user_id``, else ``user``, else ``safety_identifier`` → ``metadata.user_id``.
"""

from __future__ import annotations

import time
from typing import Any

from ._json import as_list, dumps
from ._o2a_content import convert_messages
from .errors import TranslationError
from .ids import new_completion_id
from .messages_stream_to_chat import MessagesStreamToChat
from .reasons import stop_to_finish_reason
from .usage import Usage, usage_from_anthropic, usage_to_openai

__all__ = ["MessagesStreamToChat", "chat_request_to_messages", "messages_response_to_chat"]

THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
MIN_THINKING_BUDGET = 1024
ANSWER_ROOM = 4096  # tokens kept for the answer below a caller's max_tokens
JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."
JSON_SCHEMA_INSTRUCTION = (
    "Respond with a single JSON value that conforms to this JSON Schema, and nothing else:\n"
)


# --------------------------------------------------------------------------- request


def chat_request_to_messages(
    body: dict[str, Any],
    *,
    upstream_model: str,
    default_max_tokens: int = 4096,
    adaptive_thinking: bool = False,
) -> dict[str, Any]:
    """Build the Anthropic Messages body for an OpenAI Chat Completions body."""
    if not isinstance(body, dict):
        raise TranslationError("request body must be a JSON object")
    _reject_unsupported(body)
    system, messages = convert_messages(body.get("messages"))
    out: dict[str, Any] = {"model": upstream_model, "messages": messages}
    if instruction := _format_instruction(body.get("response_format")):
        system.append(instruction)
    if system:
        out["system"] = "\n\n".join(system)
    thinking_on = _max_tokens_and_thinking(body, out, default_max_tokens, adaptive_thinking)
    _sampling(body, out, thinking_on)
    _tools(body, out)
    if user_id := _user_id(body):
        out["metadata"] = {"user_id": user_id}
    if body.get("stream") is True:
        out["stream"] = True
    return out


def _reject_unsupported(body: dict[str, Any]) -> None:
    n = body.get("n")
    if isinstance(n, int) and n > 1:
        raise TranslationError("n > 1 is not supported by this model", param="n")
    if body.get("logprobs") is True or body.get("top_logprobs"):
        raise TranslationError("logprobs are not supported by this model", param="logprobs")
    if body.get("logit_bias"):
        raise TranslationError("logit_bias is not supported by this model", param="logit_bias")
    modalities = body.get("modalities")
    if body.get("audio") or (isinstance(modalities, list) and "audio" in modalities):
        raise TranslationError("audio output is not supported by this model", param="modalities")
    if body.get("web_search_options") is not None:
        raise TranslationError("web search is not supported by this model", "web_search_options")
    if body.get("functions") or body.get("function_call"):
        raise TranslationError("legacy functions are not supported; use tools", param="functions")


def _format_instruction(response_format: Any) -> str | None:
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        return JSON_OBJECT_INSTRUCTION
    if kind == "json_schema":
        spec = response_format.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return JSON_SCHEMA_INSTRUCTION + dumps(schema if isinstance(schema, dict) else {})
    if kind in (None, "text"):
        return None
    raise TranslationError(f"response_format type {kind!r} is not supported", "response_format")


def _max_tokens_and_thinking(
    body: dict[str, Any], out: dict[str, Any], default: int, adaptive: bool
) -> bool:
    explicit = body.get("max_completion_tokens")
    if not isinstance(explicit, int):
        explicit = body.get("max_tokens") if isinstance(body.get("max_tokens"), int) else None
    effort = body.get("reasoning_effort")
    if effort is None or effort == "none":
        out["max_tokens"] = explicit if explicit is not None else default
        return False
    if not isinstance(effort, str) or effort not in THINKING_BUDGETS:
        raise TranslationError(f"reasoning_effort {effort!r} is not supported", "reasoning_effort")
    if adaptive:
        out["max_tokens"] = explicit if explicit is not None else default
        out["thinking"] = {"type": "adaptive"}
        out["output_config"] = {"effort": "low" if effort == "minimal" else effort}
        return True
    budget = THINKING_BUDGETS[effort]
    if explicit is None:
        out["max_tokens"] = default + budget
    else:
        # leave room for the answer: up to 4096 tokens (half of a small max), never below the
        # minimum budget while the max allows one
        room = min(ANSWER_ROOM, explicit // 2)
        budget = min(budget, max(explicit - room, MIN_THINKING_BUDGET), explicit - 1)
        if budget < MIN_THINKING_BUDGET:
            raise TranslationError(
                f"max_tokens must be greater than {MIN_THINKING_BUDGET} when reasoning_effort is set",
                param="max_tokens",
            )
        out["max_tokens"] = explicit
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return True


def _number(value: Any) -> float | int | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return value if ok else None


def _sampling(body: dict[str, Any], out: dict[str, Any], thinking_on: bool) -> None:
    if not thinking_on:
        if (temperature := _number(body.get("temperature"))) is not None:
            out["temperature"] = min(max(temperature, 0), 1)
        if (top_p := _number(body.get("top_p"))) is not None and "temperature" not in out:
            out["top_p"] = top_p  # never both: recent Anthropic models refuse the pair
        if isinstance(body.get("top_k"), int) and not isinstance(body.get("top_k"), bool):
            out["top_k"] = body["top_k"]
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    stops = [s for s in stops if isinstance(s, str) and s]
    if stops:
        out["stop_sequences"] = stops


def _tool_def(tool: Any, where: str) -> dict[str, Any]:
    kind = tool.get("type") if isinstance(tool, dict) else None
    function = tool.get("function") if isinstance(tool, dict) else None
    if kind != "function" or not isinstance(function, dict):
        raise TranslationError(f"{where}: tool type {kind!r} is not supported", param=where)
    if not isinstance(function.get("name"), str) or not function["name"]:
        raise TranslationError(f"{where}.function.name: Field required", param=where)
    parameters = function.get("parameters")
    out: dict[str, Any] = {
        "name": function["name"],
        "input_schema": parameters
        if isinstance(parameters, dict)
        else {"type": "object", "properties": {}},
    }
    if isinstance(function.get("description"), str):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: Any) -> dict[str, Any]:
    if choice == "auto":
        return {"type": "auto"}
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    function = choice.get("function") if isinstance(choice, dict) else None
    if isinstance(function, dict) and isinstance(function.get("name"), str):
        return {"type": "tool", "name": function["name"]}
    raise TranslationError(f"tool_choice: unsupported value {choice!r}", param="tool_choice")


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return
    out["tools"] = [_tool_def(t, f"tools.{i}") for i, t in enumerate(tools)]
    choice = _tool_choice(body.get("tool_choice") or "auto")
    if body.get("parallel_tool_calls") is False and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    if choice != {"type": "auto"}:
        out["tool_choice"] = choice


def _user_id(body: dict[str, Any]) -> str | None:
    metadata = body.get("metadata")
    candidates = [metadata.get("user_id") if isinstance(metadata, dict) else None]
    candidates += [body.get("user"), body.get("safety_identifier")]
    return next((c for c in candidates if isinstance(c, str) and c), None)


# -------------------------------------------------------------------------- response


def _tool_call(block: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": block.get("id") or "",
        "type": "function",
        "function": {"name": block.get("name") or "", "arguments": dumps(block.get("input") or {})},
    }


def messages_response_to_chat(
    resp: dict[str, Any],
    *,
    model: str,
    completion_id: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """Anthropic ``Message`` → OpenAI ``chat.completion``.

    Text blocks are concatenated into ``content``; thinking goes to
    ``reasoning_content`` (signatures and redacted thinking are dropped);
    ``tool_use`` → ``tool_calls`` with JSON-string arguments; ``content`` is
    ``null`` when the turn has tool calls and no text.
    """
    blocks = as_list(resp.get("content"))
    blocks = [b for b in blocks if isinstance(b, dict)]
    text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
    reasoning = "".join(str(b.get("thinking", "")) for b in blocks if b.get("type") == "thinking")
    calls = [_tool_call(b) for b in blocks if b.get("type") == "tool_use"]
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if calls:
        message["tool_calls"] = calls
        if not text:
            message["content"] = None
    if reasoning:
        message["reasoning_content"] = reasoning
    usage = usage_from_anthropic(resp.get("usage")) or Usage(0, 0)
    choice = {
        "index": 0,
        "message": message,
        "logprobs": None,
        "finish_reason": stop_to_finish_reason(resp.get("stop_reason")),
    }
    return {
        "id": completion_id or new_completion_id(),
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage_to_openai(usage),
    }
