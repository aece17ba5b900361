"""stop_reason (Anthropic) ⇄ finish_reason (OpenAI)."""

from __future__ import annotations

from typing import Any

_FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

_STOP_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",  # no equivalent; a gateway without server tools never sees it
}


def finish_to_stop_reason(finish_reason: str | None, *, has_tool_calls: bool = False) -> str:
    """OpenAI finish_reason → Anthropic stop_reason.

    Some OpenAI-compatible upstreams report ``stop`` (or nothing) after tool
    calls; a turn that produced tool calls is reported as ``tool_use`` unless it
    was cut by the length limit. Unknown values become ``end_turn``.
    """
    reason = _FINISH_TO_STOP.get(finish_reason or "", "end_turn")
    if has_tool_calls and reason == "end_turn":
        return "tool_use"
    return reason


def stop_to_finish_reason(stop_reason: str | None) -> str:
    """Anthropic stop_reason → OpenAI finish_reason (unknown → ``stop``)."""
    return _STOP_TO_FINISH.get(stop_reason or "", "stop")


def matched_stop_sequence(choice: dict[str, Any], stop_sequences: list[str] | None) -> str | None:
    """The stop string an upstream says it matched, if it says so.

    OpenAI does not report it; vLLM puts the string in ``choice.stop_reason``
    (an int there is a stop *token id*, which is not a stop sequence). When the
    request's ``stop_sequences`` are known, the string must be one of them.
    """
    value = choice.get("stop_reason")
    if not isinstance(value, str) or not value:
        return None
    if stop_sequences is not None and value not in stop_sequences:
        return None
    return value
