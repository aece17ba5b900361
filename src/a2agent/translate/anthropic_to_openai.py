"""Caller speaks Anthropic Messages, upstream speaks OpenAI Chat Completions.

* :func:`messages_request_to_chat` — request body.
* :func:`chat_response_to_messages` — non-streaming response.
* :class:`ChatStreamToMessages` — streaming response (see ``chat_stream_to_messages``).

Request choices (beyond those in ``_a2o_content``):

* Dropped, as OpenAI cannot express them: ``cache_control`` (anywhere),
  ``context_management``, ``container``, ``mcp_servers``, ``service_tier``,
  ``top_k``, tool ``defer_loading``/``strict``/``eager_input_streaming``, and
  the ``thinking`` config unless ``reasoning=True``.
* ``output_config.effort`` only feeds ``reasoning_effort`` for adaptive
  thinking; ``output_config.format`` (structured output) → ``response_format``.
* The system prompt becomes one leading system message (blocks joined with a
  blank line). Claude Code's ``x-anthropic-billing-header:`` block is client
  metadata for Anthropic's billing, not instructions: it is dropped.
* ``role: "system"`` entries inside ``messages`` stay in place as system messages.
* ``metadata.user_id`` → ``user`` (values over 256 chars are replaced by their
  sha256 hex digest, stable per user).
* Server tools (``web_search_*``, ``bash_*``, …) → :class:`TranslationError`:
  dropping them would silently change what the model can do.
* Tool names OpenAI rejects are shortened (see ``toolnames``); tool ids pass through.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ._a2o_content import assistant_message, plain_text, user_messages
from ._json import as_obj, input_from_arguments
from .chat_stream_to_messages import ChatStreamToMessages
from .errors import TranslationError
from .ids import new_message_id, new_tool_use_id
from .reasons import finish_to_stop_reason, matched_stop_sequence
from .toolnames import build_tool_name_map, openai_tool_name, original_tool_name
from .usage import Usage, usage_from_openai, usage_to_anthropic

__all__ = [
    "ChatStreamToMessages",
    "build_tool_name_map",
    "chat_response_to_messages",
    "effort_from_thinking",
    "messages_request_to_chat",
]

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"
USER_MAX_LEN = 256
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


# --------------------------------------------------------------------------- request


def messages_request_to_chat(
    body: dict[str, Any],
    *,
    upstream_model: str,
    reasoning: bool = False,
    keep_reasoning_content: bool = True,
    max_tokens_field: str = "max_tokens",
) -> dict[str, Any]:
    """Build the OpenAI Chat Completions body for an Anthropic Messages body.

    ``reasoning``: the upstream accepts ``reasoning_effort``; the Anthropic
    ``thinking`` config is mapped onto it, otherwise dropped.
    ``keep_reasoning_content``: send earlier thinking back as the assistant
    message's ``reasoning_content`` (DeepSeek needs it; strict OpenAI rejects it).
    ``max_tokens_field``: ``"max_tokens"`` or ``"max_completion_tokens"`` (o-series, gpt-5).
    """
    if not isinstance(body, dict):
        raise TranslationError("request body must be a JSON object")
    if max_tokens_field not in ("max_tokens", "max_completion_tokens"):
        raise ValueError(f"bad max_tokens_field {max_tokens_field!r}")
    out: dict[str, Any] = {
        "model": upstream_model,
        "messages": _chat_messages(body, keep_reasoning_content),
    }
    _sampling(body, out, max_tokens_field)
    _tools(body, out)
    if reasoning and (effort := effort_from_thinking(body)):
        out["reasoning_effort"] = effort
    _response_format(body, out)
    _user(body, out)
    if body.get("stream") is True:
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    return out


def _system_message(system: Any) -> dict[str, Any] | None:
    if isinstance(system, list):
        system = [
            b
            for b in system
            if not (isinstance(b, dict) and str(b.get("text", "")).startswith(BILLING_HEADER_PREFIX))
        ]
    text = plain_text(system, "system")
    return {"role": "system", "content": text} if text else None


def _chat_messages(body: dict[str, Any], keep_reasoning: bool) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise TranslationError("messages: Field required", param="messages")
    out: list[dict[str, Any]] = []
    if (system := _system_message(body.get("system"))) is not None:
        out.append(system)
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        if not isinstance(message, dict):
            raise TranslationError(f"{where}: Input should be an object", param=where)
        role, content = message.get("role"), message.get("content")
        if role == "user":
            out.extend(user_messages(content, f"{where}.content"))
        elif role == "assistant":
            out.append(assistant_message(content, f"{where}.content", keep_reasoning=keep_reasoning))
        elif role == "system":
            out.append({"role": "system", "content": plain_text(content, f"{where}.content")})
        else:
            raise TranslationError(
                f"{where}.role: Input should be 'user' or 'assistant'", param=f"{where}.role"
            )
    return out


def _sampling(body: dict[str, Any], out: dict[str, Any], max_tokens_field: str) -> None:
    if isinstance(body.get("max_tokens"), int):
        out[max_tokens_field] = body["max_tokens"]
    for key in ("temperature", "top_p"):
        if isinstance(body.get(key), (int, float)) and not isinstance(body.get(key), bool):
            out[key] = body[key]
    stops = body.get("stop_sequences")
    if isinstance(stops, list) and stops:
        out["stop"] = [s for s in stops if isinstance(s, str)]


def _tool_def(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise TranslationError(f"{where}.name: Field required", param=f"{where}.name")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise TranslationError(
            f"{where}: server tool type {kind!r} is not available on this model", param=where
        )
    function: dict[str, Any] = {"name": openai_tool_name(tool["name"])}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    schema = tool.get("input_schema")
    function["parameters"] = schema if isinstance(schema, dict) else {"type": "object"}
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "auto":
        return "auto"
    if kind == "any":
        return "required"
    if kind == "none":
        return "none"
    if kind == "tool" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": openai_tool_name(choice["name"])}}
    raise TranslationError(f"tool_choice: unsupported value {choice!r}", param="tool_choice")


def _tools(body: dict[str, Any], out: dict[str, Any]) -> None:
    tools = body.get("tools")
    if not isinstance(tools, list) or not tools:
        return  # a tool_choice without tools means nothing; OpenAI would reject it
    build_tool_name_map(tools)  # raises on a name collision after shortening
    out["tools"] = [_tool_def(t, f"tools.{i}") for i, t in enumerate(tools)]
    choice = body.get("tool_choice")
    if choice is not None:
        out["tool_choice"] = _tool_choice(choice)
        if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True:
            out["parallel_tool_calls"] = False


def effort_from_thinking(body: dict[str, Any]) -> str | None:
    """Anthropic ``thinking`` (+ ``output_config.effort``) → OpenAI ``reasoning_effort``.

    ``enabled``: budget < 4096 → low, < 16384 → medium, else high.
    ``adaptive``: ``output_config.effort`` (xhigh/max → high), default medium.
    Disabled or absent → ``None``.
    """
    thinking = as_obj(body.get("thinking"))
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens")
        budget = budget if isinstance(budget, int) else 0
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    if kind == "adaptive":
        config = body.get("output_config")
        effort = config.get("effort") if isinstance(config, dict) else None
        return _EFFORTS.get(effort, "medium") if isinstance(effort, str) else "medium"
    return None


def _response_format(body: dict[str, Any], out: dict[str, Any]) -> None:
    config = body.get("output_config")
    fmt = config.get("format") if isinstance(config, dict) else None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = as_obj(fmt.get("schema"))
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema},
        }


def _user(body: dict[str, Any], out: dict[str, Any]) -> None:
    metadata = body.get("metadata")
    user_id = metadata.get("user_id") if isinstance(metadata, dict) else None
    if isinstance(user_id, str) and user_id:
        if len(user_id) > USER_MAX_LEN:
            user_id = hashlib.sha256(user_id.encode()).hexdigest()
        out["user"] = user_id


# -------------------------------------------------------------------------- response


def _message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):  # some upstreams answer with content parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _reasoning_text(message: dict[str, Any]) -> str:
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _tool_use_blocks(message: dict[str, Any], tool_name_map: dict[str, str] | None) -> list[dict[str, Any]]:
    blocks = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        call_id = call.get("id")
        blocks.append(
            {
                "type": "tool_use",
                "id": call_id if isinstance(call_id, str) and call_id else new_tool_use_id(),
                "name": original_tool_name(str(function.get("name") or ""), tool_name_map),
                "input": input_from_arguments(function.get("arguments")),
            }
        )
    return blocks


def chat_response_to_messages(
    resp: dict[str, Any],
    *,
    model: str,
    tool_name_map: dict[str, str] | None = None,
    stop_sequences: list[str] | None = None,
) -> dict[str, Any]:
    """OpenAI ``chat.completion`` → Anthropic ``Message``.

    Blocks come out as thinking (from ``reasoning_content``/``reasoning``,
    with an empty signature: none is ever invented), text (the refusal text
    when the upstream refused), then tool_use.
    """
    choices = resp.get("choices") if isinstance(resp, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = as_obj(choice.get("message"))
    content: list[dict[str, Any]] = []
    if reasoning := _reasoning_text(message):
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = _message_text(message) or (message.get("refusal") or "")
    if text:
        content.append({"type": "text", "text": text})
    tool_blocks = _tool_use_blocks(message, tool_name_map)
    content.extend(tool_blocks)
    finish = choice.get("finish_reason")
    if message.get("refusal") and not finish:
        finish = "content_filter"
    stop_reason = finish_to_stop_reason(finish, has_tool_calls=bool(tool_blocks))
    stop_sequence = None
    if stop_reason == "end_turn":
        stop_sequence = matched_stop_sequence(choice, stop_sequences)
        if stop_sequence is not None:
            stop_reason = "stop_sequence"
    usage = usage_from_openai(resp.get("usage")) or Usage(0, 0)
    return {
        "id": new_message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_to_anthropic(usage),
    }
