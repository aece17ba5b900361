"""OpenAI chat messages → Anthropic ``system`` text and alternating messages.

Choices:

* Every ``system``/``developer`` message, wherever it is, is hoisted into the
  top-level ``system`` prompt (in order, joined with a blank line): Anthropic
  upstreams reject ``role: "system"`` inside ``messages``.
* ``tool`` messages become ``tool_result`` blocks in a user message;
  consecutive ones (and a user message right after them) merge into one user
  turn, with every ``tool_result`` ahead of the user's own blocks.
* Consecutive messages of one role merge, since Anthropic wants alternation.
* Empty text parts are dropped (Anthropic rejects empty text blocks); a
  message left with no blocks is dropped.
* Assistant ``tool_calls`` → ``tool_use`` blocks, arguments parsed; arguments
  that are not a JSON object are kept as ``{"_raw_arguments": text}``.
* ``reasoning_content`` on assistant history is dropped: Anthropic only
  accepts thinking it signed itself.
* Legacy ``function`` messages / ``function_call`` → :class:`TranslationError`.
"""

from __future__ import annotations

from typing import Any

from ._json import as_obj, input_from_arguments
from .errors import TranslationError
from .ids import new_tool_use_id


def parse_data_url(url: str, where: str) -> tuple[str, str]:
    """``data:<media>;base64,<data>`` → (media_type, data)."""
    header, sep, data = url.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        raise TranslationError(f"{where}: only base64 data URLs are supported", param=where)
    media_type = header[len("data:") : -len(";base64")] or "application/octet-stream"
    return media_type, data


def _image_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise TranslationError(f"{where}.image_url.url: Field required", param=where)
    if url.startswith("data:"):
        media_type, data = parse_data_url(url, where)
        source = {"type": "base64", "media_type": media_type, "data": data}
    else:
        source = {"type": "url", "url": url}
    return {"type": "image", "source": source}


def _file_block(part: dict[str, Any], where: str) -> dict[str, Any]:
    file = as_obj(part.get("file"))
    file_data = file.get("file_data")
    if not isinstance(file_data, str) or not file_data.startswith("data:"):
        raise TranslationError(
            f"{where}: only inline file_data (a base64 data URL) can be sent to this model",
            param=where,
        )
    media_type, data = parse_data_url(file_data, where)
    if media_type != "application/pdf":
        raise TranslationError(f"{where}: file type {media_type!r} is not supported", where)
    block: dict[str, Any] = {
        "type": "document",
        "source": {"type": "base64", "media_type": media_type, "data": data},
    }
    if isinstance(file.get("filename"), str) and file["filename"]:
        block["title"] = file["filename"]
    return block


def content_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    """OpenAI message content (string or parts) → Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise TranslationError(f"{where}: Input should be a string or a list", param=where)
    blocks: list[dict[str, Any]] = []
    for i, part in enumerate(content):
        here = f"{where}.{i}"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if isinstance(text, str) and text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image_block(part, here))
        elif kind == "file":
            blocks.append(_file_block(part, here))
        else:
            raise TranslationError(f"{here}: content part type {kind!r} is not supported", here)
    return blocks


def text_only(content: Any, where: str) -> str:
    """Text of a system/developer message."""
    blocks = content_blocks(content, where)
    if any(b["type"] != "text" for b in blocks):
        raise TranslationError(f"{where}: system messages may only contain text", param=where)
    return "\n\n".join(b["text"] for b in blocks)


def _tool_use(call: Any, where: str) -> dict[str, Any]:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise TranslationError(f"{where}.function.name: Field required", param=where)
    call_id = call.get("id")
    return {
        "type": "tool_use",
        "id": call_id if isinstance(call_id, str) and call_id else new_tool_use_id(),
        "name": function["name"],
        "input": input_from_arguments(function.get("arguments")),
    }


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    if message.get("function_call"):
        raise TranslationError(
            f"{where}.function_call: legacy function calls are not supported; use tool_calls",
            param=f"{where}.function_call",
        )
    blocks = content_blocks(message.get("content"), f"{where}.content")
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise TranslationError(f"{where}.tool_calls: Input should be a list", f"{where}.tool_calls")
    blocks.extend(_tool_use(c, f"{where}.tool_calls.{j}") for j, c in enumerate(calls))
    return blocks


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise TranslationError(f"{where}.tool_call_id: Field required", f"{where}.tool_call_id")
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id}
    inner = content_blocks(message.get("content"), f"{where}.content")
    if inner and all(b["type"] == "text" for b in inner):
        block["content"] = "\n".join(b["text"] for b in inner)
    elif inner:
        block["content"] = inner
    return block


def _append(out: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if not blocks:
        return
    if out and out[-1]["role"] == role:
        out[-1]["content"].extend(blocks)
    else:
        out.append({"role": role, "content": list(blocks)})


def _results_first(message: dict[str, Any]) -> dict[str, Any]:
    if message["role"] == "user":
        blocks = message["content"]
        results = [b for b in blocks if b["type"] == "tool_result"]
        message["content"] = results + [b for b in blocks if b["type"] != "tool_result"]
    return message


def convert_messages(messages: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """OpenAI ``messages`` → (system texts, Anthropic messages)."""
    if not isinstance(messages, list) or not messages:
        raise TranslationError("messages: Field required", param="messages")
    system: list[str] = []
    out: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        where = f"messages.{i}"
        role = message.get("role") if isinstance(message, dict) else None
        if role in ("system", "developer"):
            if text := text_only(message.get("content"), f"{where}.content"):
                system.append(text)
        elif role == "user":
            _append(out, "user", content_blocks(message.get("content"), f"{where}.content"))
        elif role == "assistant":
            _append(out, "assistant", _assistant_blocks(message, where))
        elif role == "tool":
            _append(out, "user", [_tool_result(message, where)])
        elif role == "function":
            raise TranslationError(
                f"{where}.role: legacy 'function' messages are not supported; use 'tool'",
                param=f"{where}.role",
            )
        else:
            raise TranslationError(f"{where}.role: unsupported role {role!r}", f"{where}.role")
    return system, [_results_first(m) for m in out]
