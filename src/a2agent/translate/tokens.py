"""Token counting for ``POST /v1/messages/count_tokens`` on non-Anthropic channels.

The caller supplies ``counter`` (text → token count), e.g. a BPE tokenizer it
loaded itself; this module stays free of I/O. What is counted:

* the system prompt (string or text blocks);
* each tool: name, description and its input JSON schema (compact JSON),
  plus ``TOOL_OVERHEAD`` tokens;
* each message: ``MESSAGE_OVERHEAD`` tokens plus its content — text,
  thinking text, ``tool_use`` name + input JSON, ``tool_result`` content;
* images: a fixed ``IMAGE_TOKENS`` each (Anthropic's cost for an image at the
  ~1.15 megapixel size it scales large images down to: w*h/750 ≈ 1600);
* PDF documents: ``PDF_PAGE_TOKENS`` per page, pages counted from the PDF's
  ``/Type /Page`` objects (at least 1); text documents count their text;
* ``REQUEST_OVERHEAD`` once.

All text is joined with newlines and counted in one ``counter`` call.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from typing import Any

from ._json import as_obj, dumps
from .errors import TranslationError
from .walk import MAX_JSON_DEPTH

IMAGE_TOKENS = 1600
PDF_PAGE_TOKENS = 1500
MESSAGE_OVERHEAD = 3
TOOL_OVERHEAD = 8
REQUEST_OVERHEAD = 3
_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def pdf_page_count(data_b64: str) -> int:
    """Pages of a base64 PDF, by counting page objects (1 when none can be seen)."""
    try:
        raw = base64.b64decode(data_b64, validate=False)
    except (binascii.Error, ValueError):
        return 1
    return max(len(_PDF_PAGE.findall(raw)), 1)


class _Tally:
    def __init__(self) -> None:
        self.texts: list[str] = []
        self.fixed = REQUEST_OVERHEAD

    def text(self, value: Any) -> None:
        if isinstance(value, str) and value:
            self.texts.append(value)

    def content(self, content: Any, depth: int = 0) -> None:
        if isinstance(content, str):
            self.text(content)
        elif isinstance(content, list) and depth < MAX_JSON_DEPTH:
            for block in content:
                if isinstance(block, dict):
                    self.block(block, depth + 1)

    def block(self, block: dict[str, Any], depth: int = 0) -> None:
        kind = block.get("type")
        if kind == "text":
            self.text(block.get("text"))
        elif kind == "thinking":
            self.text(block.get("thinking"))
        elif kind in ("tool_use", "server_tool_use"):
            self.text(block.get("name"))
            self.text(dumps(block.get("input") or {}))
        elif isinstance(kind, str) and kind.endswith("tool_result"):
            self.content(block.get("content"), depth + 1)
        elif kind == "image":
            self.fixed += IMAGE_TOKENS
        elif kind == "document":
            self.document(block, depth)

    def document(self, block: dict[str, Any], depth: int = 0) -> None:
        source = as_obj(block.get("source"))
        self.text(block.get("title"))
        if source.get("type") == "text":
            self.text(source.get("data"))
        elif source.get("type") == "content":
            self.content(source.get("content"), depth + 1)
        elif source.get("type") == "base64" and isinstance(source.get("data"), str):
            self.fixed += PDF_PAGE_TOKENS * pdf_page_count(source["data"])
        else:
            self.fixed += PDF_PAGE_TOKENS

    def tool(self, tool: dict[str, Any]) -> None:
        self.fixed += TOOL_OVERHEAD
        self.text(tool.get("name"))
        self.text(tool.get("description"))
        if isinstance(tool.get("input_schema"), dict):
            self.text(dumps(tool["input_schema"]))


def count_message_tokens(body: dict[str, Any], counter: Callable[[str], int]) -> int:
    """Estimate the input tokens of an Anthropic Messages / count_tokens body."""
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise TranslationError("messages: Field required", param="messages")
    tally = _Tally()
    tally.content(body.get("system"))
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            tally.tool(tool)
    for message in body["messages"]:
        if isinstance(message, dict):
            tally.fixed += MESSAGE_OVERHEAD
            tally.content(message.get("content"))
    counted = counter("\n".join(tally.texts)) if tally.texts else 0
    return tally.fixed + int(counted)
