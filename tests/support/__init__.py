"""Test support code: a scripted fake upstream LLM provider (OpenAI + Anthropic)."""

from .remote import RemoteUpstream
from .script import DEFAULT_TEXT, Script, ToolCall, Usage, estimate_input_tokens
from .upstream import RecordedRequest, ScriptedUpstream

__all__ = [
    "DEFAULT_TEXT",
    "RecordedRequest",
    "RemoteUpstream",
    "Script",
    "ScriptedUpstream",
    "ToolCall",
    "Usage",
    "estimate_input_tokens",
]
