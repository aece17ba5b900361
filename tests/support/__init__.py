"""Test support code: a scripted fake upstream LLM provider (OpenAI + Anthropic).

Exports are resolved lazily so that ``python -m tests.support.upstream`` does
not import the module twice (runpy warns when the package pre-imports it).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DEFAULT_TEXT": "script",
    "Script": "script",
    "ToolCall": "script",
    "Usage": "script",
    "estimate_input_tokens": "script",
    "RecordedRequest": "recording",
    "ScriptedUpstream": "upstream",
    "RemoteUpstream": "remote",
}

__all__ = [
    "DEFAULT_TEXT", "RecordedRequest", "RemoteUpstream", "Script", "ScriptedUpstream", "ToolCall",
    "Usage", "estimate_input_tokens",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
