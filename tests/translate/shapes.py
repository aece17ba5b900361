"""Captured request shapes and official-SDK harnesses shared by the translation tests.

The SDK harnesses serve translated events as real SSE bytes through an
``httpx2.MockTransport`` and let the official ``anthropic`` / ``openai`` clients
parse and accumulate them exactly as they would from a live gateway.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import anthropic
import httpx2
import openai

from a2agent.translate.sse import OPENAI_DONE, anthropic_sse_many, openai_sse_many

LONG_MCP_TOOL = "mcp__internal-knowledge-base__search_engineering_design_documents_by_component_owner"

# Shape of a Claude Code 2.1.332 turn after a parallel tool round (protocols.md §1.4).
CLAUDE_CODE_REQUEST: dict[str, Any] = {
    "model": "claude-opus-5-5",
    "max_tokens": 32000,
    "stream": True,
    "system": [
        {
            "type": "text",
            "text": "x-anthropic-billing-header: cc_version=2.1.332.a1b; cc_entrypoint=sdk-cli;",
        },
        {
            "type": "text",
            "text": "You are Claude Code, Anthropic's official CLI for Claude.",
            "cache_control": {"type": "ephemeral"},
        },
        {
            "type": "text",
            "text": "You are an interactive CLI tool that helps users with software tasks.",
            "cache_control": {"type": "ephemeral"},
        },
    ],
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "List the files and read README"}]},
        {
            "role": "system",
            "content": [
                {
                    "type": "text",
                    "text": "<env>Working directory: /repo\nPlatform: linux</env>",
                    "cache_control": {"type": "ephemeral"},
                }
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "I should list and read.", "signature": "EqQBCkYIBxgCKkD"},
                {"type": "text", "text": "I'll look around."},
                {"type": "tool_use", "id": "toolu_01A", "name": "Bash", "input": {"command": "ls"}},
                {
                    "type": "tool_use",
                    "id": "toolu_01B",
                    "name": LONG_MCP_TOOL,
                    "input": {"query": "README", "limit": 3},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01A",
                    "content": "README.md\nsrc",
                    "is_error": False,
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01B",
                    "content": [{"type": "text", "text": "no such index"}],
                    "is_error": True,
                    "cache_control": {"type": "ephemeral"},
                },
            ],
        },
    ],
    "tools": [
        {
            "name": "Bash",
            "description": "Run a shell command",
            "input_schema": {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "type": "object",
                "properties": {"command": {"type": "string"}},
                "required": ["command"],
                "additionalProperties": False,
            },
        },
        {
            "name": LONG_MCP_TOOL,
            "description": "Search design docs",
            "input_schema": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
            },
            "cache_control": {"type": "ephemeral"},
        },
        {
            "name": "DeferredToolPlaceholder",
            "description": "Placeholder",
            "input_schema": {"type": "object", "properties": {}},
            "defer_loading": True,
        },
    ],
    "metadata": {
        "user_id": '{"device_id":"3f2a","account_uuid":"","session_id":"5b0c-11"}',
    },
    "thinking": {"type": "adaptive", "display": "omitted"},
    "output_config": {"effort": "high"},
    "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
}

PNG_B64 = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

# Shape of an openai-python request with tools, an image and a tool round.
OPENAI_SDK_REQUEST: dict[str, Any] = {
    "model": "gpt-4o",
    "stream": True,
    "stream_options": {"include_usage": True},
    "messages": [
        {"role": "system", "content": "You are terse."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image, and what's the weather?"},
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:image/png;base64,{PNG_B64}", "detail": "low"},
                },
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_def",
                    "type": "function",
                    "function": {"name": "get_time", "arguments": '{"tz":"CET"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc", "content": "18C, cloudy"},
        {"role": "tool", "tool_call_id": "call_def", "content": "14:05"},
        {"role": "user", "content": "Thanks. Summarise."},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
        },
    ],
    "tool_choice": "auto",
    "temperature": 1.4,
    "max_completion_tokens": 900,
    "stop": ["END"],
    "user": "user-42",
    "seed": 7,
}


def _client_kwargs(body: bytes, base_url: str) -> dict[str, Any]:
    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream; charset=utf-8"}, content=body
        )

    transport = httpx2.MockTransport(handler)
    return {
        "api_key": "test-key",
        "base_url": base_url,
        "max_retries": 0,
        "http_client": httpx2.Client(transport=transport),
    }


def run_anthropic_sdk(events: Iterable[tuple[str, dict[str, Any]]]) -> Any:
    """Final ``Message`` the official anthropic SDK builds from these SSE events."""
    client = anthropic.Anthropic(**_client_kwargs(anthropic_sse_many(events), "http://gw.test"))
    with client.messages.stream(
        model="m", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        return stream.get_final_message()


def run_openai_sdk(chunks: Iterable[dict[str, Any]], *, done: bool = True) -> Any:
    """Final ``ChatCompletion`` the official openai SDK builds from these ``data:`` chunks."""
    body = openai_sse_many(chunks) + (OPENAI_DONE if done else b"")
    client = openai.OpenAI(**_client_kwargs(body, "http://gw.test/v1"))
    with client.chat.completions.stream(
        model="m", messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        return stream.get_final_completion()


def run_openai_sdk_snapshot(chunks: Iterable[dict[str, Any]]) -> Any:
    """Completion snapshot from ``create(stream=True)`` + ``ChatCompletionStreamState``.

    Unlike ``.stream().get_final_completion()`` this does not raise on the
    ``length`` / ``content_filter`` finish reasons, so every stop reason can be checked.
    """
    from openai.lib.streaming.chat import ChatCompletionStreamState

    client = openai.OpenAI(**_client_kwargs(openai_sse_many(chunks) + OPENAI_DONE, "http://gw.test/v1"))
    state: ChatCompletionStreamState[Any] = ChatCompletionStreamState()
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    for chunk in stream:
        state.handle_chunk(chunk)
    return state.current_completion_snapshot
