"""Tool names that OpenAI accepts, and the way back to the caller's names.

OpenAI function names must match ``^[a-zA-Z0-9_-]{1,64}$``; Anthropic accepts
longer ones (MCP tools such as ``mcp__server__some_very_long_tool_name``).
When translating Anthropic → OpenAI, a name that does not fit is replaced by

    <first 55 chars, invalid chars turned into "_"> + "_" + <8 hex of sha256(name)>

which is 64 chars at most, deterministic (the same name gives the same
replacement in every request, so history and tool definitions agree) and
practically collision-free. :func:`build_tool_name_map` returns the reverse map
(upstream name → original name) that the response and stream translators take
as ``tool_name_map``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from .errors import TranslationError

OPENAI_NAME_MAX = 64
_VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
_PREFIX_LEN = 55


def openai_tool_name(name: str) -> str:
    """``name`` itself when OpenAI accepts it, else its deterministic short form."""
    if _VALID.match(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    prefix = _INVALID_CHARS.sub("_", name)[:_PREFIX_LEN]
    return f"{prefix}_{digest}"


def _tool_name(tool: Any) -> str | None:
    if not isinstance(tool, dict):
        return None
    fn = tool.get("function")
    name = fn.get("name") if isinstance(fn, dict) else tool.get("name")
    return name if isinstance(name, str) else None


def build_tool_name_map(tools: Iterable[Any] | None) -> dict[str, str]:
    """Map upstream (OpenAI-safe) name → original name, for the names that change.

    Accepts Anthropic tool definitions (``{"name": ...}``) or OpenAI ones
    (``{"function": {"name": ...}}``). Raises :class:`TranslationError` if two
    different tools would end up with the same upstream name.
    """
    mapping: dict[str, str] = {}
    seen: dict[str, str] = {}
    for tool in tools or ():
        name = _tool_name(tool)
        if name is None:
            continue
        short = openai_tool_name(name)
        if seen.setdefault(short, name) != name:
            raise TranslationError(
                f"tools: names {seen[short]!r} and {name!r} collide after shortening to {short!r}",
                param="tools",
            )
        if short != name:
            mapping[short] = name
    return mapping


def original_tool_name(name: str, tool_name_map: dict[str, str] | None) -> str:
    """The caller's name for an upstream tool name."""
    if tool_name_map:
        return tool_name_map.get(name, name)
    return name
