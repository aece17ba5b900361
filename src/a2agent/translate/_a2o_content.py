"""Anthropic content blocks → OpenAI chat messages and content parts.

Choices made here:

* ``cache_control`` and every other Anthropic-only block field is dropped,
  because output objects are built field by field, never copied.
* ``tool_result`` blocks become ``role: "tool"`` messages placed *before* the
  user text of the same turn (OpenAI wants tool messages right after the
  assistant's ``tool_calls``). Their content is always a string: text blocks
  joined with newlines; ``is_error: true`` is prefixed with ``"Error: "``.
* Images (and PDFs) inside a tool result cannot live in a tool message; they
  move into the following user message, introduced by a text part naming the
  tool call they came from.
* ``document`` blocks: base64 PDF → an OpenAI ``file`` part with a data URL;
  plain-text and content-block documents → text; URL or Files-API documents →
  :class:`TranslationError` (no offline way to express them).
* Assistant ``thinking`` blocks → ``reasoning_content`` on the assistant message
  (DeepSeek requires it back on tool-call turns); ``redacted_thinking`` is
  dropped; signatures are never forwarded.
"""

from __future__ import annotations

from typing import Any

from ._json import arguments_from_input
from .errors import TranslationError
from .ids import new_call_id
from .toolnames import openai_tool_name

TOOL_ERROR_PREFIX = "Error: "


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """Content as a list of blocks (a bare string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if content is None:
        return []
    if not isinstance(content, list):
        raise TranslationError(f"{where}: Input should be a valid list or string", param=where)
    for i, block in enumerate(content):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            raise TranslationError(f"{where}.{i}: content block must be an object with a type", where)
    return content


def plain_text(content: Any, where: str) -> str:
    """Text of a system prompt or system message (string or text blocks)."""
    parts = []
    for i, block in enumerate(_blocks(content, where)):
        if block["type"] != "text":
            raise TranslationError(
                f"{where}.{i}: only text blocks are allowed here, got {block['type']!r}", where
            )
        parts.append(str(block.get("text", "")))
    return "\n\n".join(p for p in parts if p)


def image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    source = source if isinstance(source, dict) else {}
    kind = source.get("type")
    if kind == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif kind == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise TranslationError(
            f"{where}: image source type {kind!r} cannot be sent to this model", param=where
        )
    return {"type": "image_url", "image_url": {"url": url}}


def document_parts(block: dict[str, Any], where: str) -> list[dict[str, Any]]:
    source = block.get("source")
    source = source if isinstance(source, dict) else {}
    kind = source.get("type")
    title = block.get("title") if isinstance(block.get("title"), str) else None
    if kind == "base64" and source.get("media_type") == "application/pdf":
        file = {
            "filename": title or "document.pdf",
            "file_data": f"data:application/pdf;base64,{source.get('data', '')}",
        }
        return [{"type": "file", "file": file}]
    if kind == "text":
        text = str(source.get("data", ""))
        return [{"type": "text", "text": f"{title}\n\n{text}" if title else text}]
    if kind == "content":
        return [p for b in _blocks(source.get("content"), where) for p in user_parts(b, where)]
    raise TranslationError(
        f"{where}: document source type {kind!r} cannot be sent to this model "
        "(only base64 PDF, text and content documents can be translated)",
        param=where,
    )


def user_parts(block: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """OpenAI content parts for one user-side block (text, image, document)."""
    kind = block["type"]
    if kind == "text":
        text = block.get("text")
        return [{"type": "text", "text": text}] if isinstance(text, str) and text else []
    if kind == "image":
        return [image_part(block, where)]
    if kind == "document":
        return document_parts(block, where)
    raise TranslationError(f"{where}: content block type {kind!r} is not supported here", where)


def _tool_result(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One ``role: "tool"`` message, plus parts (images, files) that must move to a user turn."""
    tool_use_id = block.get("tool_use_id")
    if not isinstance(tool_use_id, str) or not tool_use_id:
        raise TranslationError(f"{where}.tool_use_id: Field required", param=f"{where}.tool_use_id")
    texts: list[str] = []
    moved: list[dict[str, Any]] = []
    for i, inner in enumerate(_blocks(block.get("content"), f"{where}.content")):
        for part in user_parts(inner, f"{where}.content.{i}"):
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                moved.append(part)
    text = "\n".join(texts)
    if block.get("is_error") is True:
        text = TOOL_ERROR_PREFIX + text if text else TOOL_ERROR_PREFIX.rstrip(": ")
    if moved:
        intro = {"type": "text", "text": f"[Attachments returned by tool call {tool_use_id}]"}
        moved = [intro, *moved]
    return {"role": "tool", "tool_call_id": tool_use_id, "content": text}, moved


def _user_message(parts: list[dict[str, Any]]) -> dict[str, Any]:
    if len(parts) == 1 and parts[0]["type"] == "text":
        return {"role": "user", "content": parts[0]["text"]}
    return {"role": "user", "content": parts}


def user_messages(content: Any, where: str) -> list[dict[str, Any]]:
    """An Anthropic user turn → tool messages first, then at most one user message."""
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, where)):
        here = f"{where}.{i}"
        if block["type"] == "tool_result":
            message, extra = _tool_result(block, here)
            tools.append(message)
            moved.extend(extra)
        else:
            parts.extend(user_parts(block, here))
    out = list(tools)
    if moved or parts:
        out.append(_user_message(moved + parts))
    elif not tools:
        out.append({"role": "user", "content": ""})
    return out


def _tool_call(block: dict[str, Any], where: str) -> dict[str, Any]:
    name = block.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError(f"{where}.name: Field required", param=f"{where}.name")
    call_id = block.get("id") if isinstance(block.get("id"), str) and block["id"] else new_call_id()
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": openai_tool_name(name), "arguments": arguments_from_input(block.get("input"))},
    }


def assistant_message(content: Any, where: str, *, keep_reasoning: bool) -> dict[str, Any]:
    """An Anthropic assistant turn → one OpenAI assistant message."""
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(_blocks(content, where)):
        kind = block["type"]
        if kind == "text":
            texts.append(str(block.get("text", "")))
        elif kind == "thinking":
            reasoning.append(str(block.get("thinking", "")))
        elif kind == "redacted_thinking":
            continue
        elif kind == "tool_use":
            calls.append(_tool_call(block, f"{where}.{i}"))
        else:
            raise TranslationError(
                f"{where}.{i}: assistant content block type {kind!r} cannot be sent to this model",
                param=f"{where}.{i}",
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts)}
    if calls:
        message["tool_calls"] = calls
        if not message["content"]:
            message["content"] = None
    joined = "\n\n".join(r for r in reasoning if r)
    if keep_reasoning and joined:
        message["reasoning_content"] = joined
    return message
