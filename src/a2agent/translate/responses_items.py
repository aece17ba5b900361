"""Shared pieces of the OpenAI Responses translators (pure, no I/O).

* :class:`ToolMap` — Responses tools flattened into plain functions for Chat and Messages
  upstreams, and the way back: a ``custom`` tool (Codex's freeform ``apply_patch``) becomes a
  function taking ``{"input": string}`` and comes back as a ``custom_tool_call``; a
  ``namespace`` tool's functions become ``<namespace>__<name>`` and come back as ``name`` +
  ``namespace``; ``tool_search`` becomes a function whose object arguments come back as a
  ``tool_search_call``. Hosted tools (``web_search`` …) are dropped: Chat and Messages
  upstreams cannot run them, and Codex still works without them.
* Output item builders and the Responses ``usage`` shape (``total_tokens`` and both details
  objects always present: Codex fails a turn without them).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ._json import dumps, loads
from .errors import TranslationError
from .toolnames import openai_tool_name
from .usage import Usage

FUNCTION = "function"
CUSTOM = "custom"
TOOL_SEARCH = "tool_search"
NS_SEPARATOR = "__"
# hosted tools: run by OpenAI's servers, so only a native Responses upstream can honour them
HOSTED_TOOLS = frozenset({
    "web_search", "web_search_preview", "file_search", "code_interpreter", "image_generation",
    "computer_use_preview", "local_shell", "mcp", "shell", "apply_patch",
})
CUSTOM_PARAMETERS = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The raw freeform input of the tool."}},
    "required": ["input"],
    "additionalProperties": False,
}


def new_id(prefix: str) -> str:
    return prefix + "_" + secrets.token_hex(12)


@dataclass(frozen=True)
class ToolRef:
    """What an upstream function name stands for in the caller's Responses vocabulary."""

    kind: str  # function | custom | tool_search
    name: str
    namespace: str | None = None


@dataclass(frozen=True)
class FlatTool:
    """A Responses tool as one plain function for the upstream."""

    name: str  # upstream name
    description: str
    parameters: dict[str, Any]


@dataclass
class ToolMap:
    by_upstream: dict[str, ToolRef] = field(default_factory=dict)
    tools: list[FlatTool] = field(default_factory=list)

    def add(self, ref: ToolRef, description: str, parameters: Any) -> str:
        full = ref.namespace + NS_SEPARATOR + ref.name if ref.namespace else ref.name
        upstream = openai_tool_name(full)
        if upstream in self.by_upstream:
            if self.by_upstream[upstream] != ref:
                raise TranslationError(f"two tools would share the upstream name {upstream!r}", "tools")
            return upstream
        self.by_upstream[upstream] = ref
        params = parameters if isinstance(parameters, dict) else {"type": "object", "properties": {}}
        self.tools.append(FlatTool(upstream, description, params))
        return upstream

    def upstream_name(self, name: str, namespace: str | None = None, kind: str = FUNCTION) -> str:
        """The upstream name of a call in the history (tools no longer offered still map)."""
        full = namespace + NS_SEPARATOR + name if namespace else name
        upstream = openai_tool_name(full)
        self.by_upstream.setdefault(upstream, ToolRef(kind, name, namespace))
        return upstream

    def ref(self, upstream: str) -> ToolRef:
        return self.by_upstream.get(upstream) or ToolRef(FUNCTION, upstream)


def build_tool_map(tools: Any, input_items: Any = None) -> ToolMap:
    """Flatten the request's tools (and those a ``tool_search_output`` in the history added)."""
    tmap = ToolMap()
    if tools is not None and not isinstance(tools, list):
        raise TranslationError("tools: must be an array", "tools")
    for i, tool in enumerate(tools or ()):
        _add_tool(tmap, tool, f"tools.{i}", None)
    for item in input_items if isinstance(input_items, list) else ():
        if isinstance(item, dict) and item.get("type") == "tool_search_output":
            for tool in item.get("tools") or ():
                _add_tool(tmap, tool, "input.tool_search_output", None)
    return tmap


def _add_tool(tmap: ToolMap, tool: Any, where: str, namespace: str | None) -> None:
    if not isinstance(tool, dict):
        raise TranslationError(f"{where}: each tool must be an object", where)
    kind = tool.get("type")
    raw_desc = tool.get("description")
    desc: str = raw_desc if isinstance(raw_desc, str) else ""
    name = tool.get("name")
    if kind == "function":
        if not isinstance(name, str) or not name:
            raise TranslationError(f"{where}.name: a function tool needs a name", f"{where}.name")
        tmap.add(ToolRef(FUNCTION, name, namespace), desc, tool.get("parameters"))
    elif kind == "custom":
        if not isinstance(name, str) or not name:
            raise TranslationError(f"{where}.name: a custom tool needs a name", f"{where}.name")
        fmt = tool.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "grammar" and isinstance(fmt.get("definition"), str):
            desc = (desc + "\n\nThe `input` string must follow this " + str(fmt.get("syntax") or "")
                    + " grammar:\n" + fmt["definition"]).strip()
        tmap.add(ToolRef(CUSTOM, name, namespace), desc, CUSTOM_PARAMETERS)
    elif kind == "namespace":
        if not isinstance(name, str) or not name:
            raise TranslationError(f"{where}.name: a namespace tool needs a name", f"{where}.name")
        for j, inner in enumerate(tool.get("tools") or ()):
            _add_tool(tmap, inner, f"{where}.tools.{j}", name)
    elif kind == "tool_search":
        tmap.add(ToolRef(TOOL_SEARCH, TOOL_SEARCH), desc or "Search for more tools.", tool.get("parameters"))
    elif kind in HOSTED_TOOLS or (isinstance(kind, str) and kind.startswith("web_search")):
        return
    else:
        raise TranslationError(f"{where}.type: tool type {kind!r} is not supported by this model",
                               f"{where}.type")


# --------------------------------------------------------------------------- items


def call_arguments(item: dict[str, Any]) -> str:
    """The upstream function-call arguments (a JSON text) of a call item in the history."""
    kind = item.get("type")
    if kind == "custom_tool_call":
        return dumps({"input": item.get("input") if isinstance(item.get("input"), str) else ""})
    args = item.get("arguments")
    if kind == "tool_search_call":
        return dumps(args if isinstance(args, dict) else {})
    return args if isinstance(args, str) and args else "{}"


def call_item(ref: ToolRef, call_id: str, arguments: str, item_id: str | None = None) -> dict[str, Any]:
    """The Responses output item for an upstream function call (arguments: JSON text)."""
    if ref.kind == CUSTOM:
        try:
            parsed = loads(arguments) if arguments else {}
        except ValueError:
            parsed = None
        text = parsed.get("input") if isinstance(parsed, dict) else None
        return {"type": "custom_tool_call", "id": item_id or new_id("ctc"), "status": "completed",
                "call_id": call_id, "name": ref.name, "input": text if isinstance(text, str) else arguments}
    if ref.kind == TOOL_SEARCH:
        try:
            parsed = loads(arguments) if arguments else {}
        except ValueError:
            parsed = {}
        return {"type": "tool_search_call", "id": item_id or new_id("tsc"), "status": "completed",
                "call_id": call_id, "execution": "client",
                "arguments": parsed if isinstance(parsed, dict) else {}}
    item = {"type": "function_call", "id": item_id or new_id("fc"), "status": "completed",
            "call_id": call_id, "name": ref.name, "arguments": arguments or "{}"}
    if ref.namespace:
        item["namespace"] = ref.namespace
    return item


def message_item(text: str, item_id: str | None = None) -> dict[str, Any]:
    return {"type": "message", "id": item_id or new_id("msg"), "status": "completed", "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}


def reasoning_item(text: str, encrypted: str | None, item_id: str | None = None) -> dict[str, Any]:
    return {"type": "reasoning", "id": item_id or new_id("rs"), "summary": [],
            "content": [{"type": "reasoning_text", "text": text}] if text else [],
            "encrypted_content": encrypted, "status": "completed"}


def reasoning_text(item: dict[str, Any]) -> str:
    """The thinking text of a reasoning item from the history (content, else its summary)."""
    parts = [p.get("text") for p in item.get("content") or () if isinstance(p, dict)]
    if not any(isinstance(p, str) and p for p in parts):
        parts = [p.get("text") for p in item.get("summary") or () if isinstance(p, dict)]
    return "\n\n".join(p for p in parts if isinstance(p, str) and p)


def output_text(output: Any) -> str:
    """A tool output (a string or a list of content parts) as text."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "\n".join(str(p.get("text")) for p in output
                         if isinstance(p, dict) and isinstance(p.get("text"), str))
    return "" if output is None else dumps(output)


def message_texts(content: Any, where: str) -> list[str]:
    """The text parts of a system/developer/assistant message."""
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        raise TranslationError(f"{where}.content: must be a string or an array", f"{where}.content")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict):
            raise TranslationError(f"{where}.content.{j}: must be an object", f"{where}.content.{j}")
        if part.get("type") in ("input_text", "output_text", "text", "refusal", "summary_text"):
            value = part.get("text") if part.get("type") != "refusal" else part.get("refusal")
            if isinstance(value, str):
                texts.append(value)
        else:
            raise TranslationError(f"{where}.content.{j}: {part.get('type')!r} is not allowed here",
                                   f"{where}.content.{j}")
    return texts


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``input`` as a list of items (a string is one user message)."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if value is None:
        return []
    if not isinstance(value, list):
        raise TranslationError("input: must be a string or an array of items", "input")
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise TranslationError(f"input.{i}: each item must be an object", f"input.{i}")
    return value


def item_type(item: dict[str, Any]) -> str:
    kind = item.get("type")
    if kind is None and "role" in item:
        return "message"
    return str(kind)


# --------------------------------------------------------------------------- usage and envelope


def usage_to_responses(u: Usage | None, reasoning_tokens: int = 0) -> dict[str, Any]:
    u = u or Usage(0, 0)
    return {
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cache_read_tokens, "cache_write_tokens": u.cache_write_tokens},
        "output_tokens": u.output_tokens,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": u.total,
    }


def response_object(request: dict[str, Any], *, model: str, response_id: str, created_at: int | None = None,
                    status: str = "completed", output: list[dict[str, Any]] | None = None,
                    usage: dict[str, Any] | None = None, error: dict[str, Any] | None = None,
                    incomplete_reason: str | None = None) -> dict[str, Any]:
    """The ``response`` object, echoing the request's settings like OpenAI does."""
    reasoning = request.get("reasoning")
    text = request.get("text")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at or int(time.time()),
        "status": status,
        "model": model,
        "output": output or [],
        "usage": usage,
        "error": error,
        "incomplete_details": {"reason": incomplete_reason} if incomplete_reason else None,
        "instructions": request.get("instructions") if isinstance(request.get("instructions"), str) else None,
        "metadata": request.get("metadata") if isinstance(request.get("metadata"), dict) else {},
        "parallel_tool_calls": request.get("parallel_tool_calls") is not False,
        "tool_choice": request.get("tool_choice") or "auto",
        "tools": [],
        "temperature": request.get("temperature"),
        "top_p": request.get("top_p"),
        "max_output_tokens": request.get("max_output_tokens"),
        "previous_response_id": None,
        "reasoning": reasoning if isinstance(reasoning, dict) else None,
        "store": False,
        "text": text if isinstance(text, dict) else {"format": {"type": "text"}},
        "truncation": "disabled",
    }


def efforts(value: Any) -> str | None:
    """``reasoning.effort`` normalised to low / medium / high (None: no reasoning asked)."""
    if not isinstance(value, str):
        return None
    return {"minimal": "low", "low": "low", "medium": "medium", "high": "high", "xhigh": "high"}.get(value)
