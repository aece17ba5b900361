"""count_message_tokens: what is counted, with a transparent counter."""

from __future__ import annotations

import base64

import pytest

from a2agent.translate.errors import TranslationError
from a2agent.translate.tokens import (
    IMAGE_TOKENS,
    MESSAGE_OVERHEAD,
    PDF_PAGE_TOKENS,
    REQUEST_OVERHEAD,
    TOOL_OVERHEAD,
    count_message_tokens,
    pdf_page_count,
)


class Recorder:
    """Counts one token per whitespace-separated word and keeps what it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, text: str) -> int:
        self.seen.append(text)
        return len(text.split())


def test_counts_system_tools_and_every_content_kind(claude_code_request):
    counter = Recorder()
    total = count_message_tokens(claude_code_request, counter)
    assert len(counter.seen) == 1  # one counter call for the whole request
    text = counter.seen[0]
    for expected in (
        "You are Claude Code",  # system block
        "Run a shell command",  # tool description
        '"additionalProperties":false',  # tool schema, compact JSON
        "<env>Working directory",  # role=system message
        "I should list and read.",  # thinking
        '{"command":"ls"}',  # tool_use input
        "README.md",  # tool_result string
        "no such index",  # tool_result blocks
    ):
        assert expected in text, expected
    assert "cache_control" not in text and "ephemeral" not in text
    fixed = REQUEST_OVERHEAD + 3 * TOOL_OVERHEAD + 4 * MESSAGE_OVERHEAD
    assert total == fixed + len(text.split())


def test_images_and_documents_have_fixed_costs():
    pdf = base64.b64encode(b"%PDF-1.4 /Type /Pages /Type /Page x /Type/Page y").decode()
    body = {"messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": pdf}},
        {"type": "document", "source": {"type": "text", "data": "four words right here"}},
    ]}]}
    total = count_message_tokens(body, Recorder())
    assert pdf_page_count(pdf) == 2  # /Pages (the page tree) is not a page
    expected = REQUEST_OVERHEAD + MESSAGE_OVERHEAD + IMAGE_TOKENS + 2 * PDF_PAGE_TOKENS + 4
    assert total == expected


def test_pdf_page_count_fallbacks():
    assert pdf_page_count("!!!not base64") == 1
    assert pdf_page_count(base64.b64encode(b"compressed object streams").decode()) == 1


def test_more_text_means_more_tokens_with_a_real_style_counter():
    def chars(text: str) -> int:
        return len(text) // 4

    short = {"messages": [{"role": "user", "content": "hello"}]}
    long = {"messages": [{"role": "user", "content": "hello " * 500}]}
    assert count_message_tokens(long, chars) > count_message_tokens(short, chars)


def test_empty_messages_costs_only_overheads():
    assert count_message_tokens({"messages": []}, Recorder()) == REQUEST_OVERHEAD


@pytest.mark.parametrize("body", [{}, {"messages": "nope"}, []])
def test_invalid_body_raises(body):
    with pytest.raises(TranslationError):
        count_message_tokens(body, Recorder())
