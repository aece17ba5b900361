"""The one body walker (translate/walk.py) and upstream error sanitising: iterative, bounded."""

from __future__ import annotations

import orjson
import pytest

from a2agent.routing.sanitize import sanitize
from a2agent.translate.walk import MAX_JSON_DEPTH, TooDeep, estimate_tokens, json_depth, prompt_strings

pytestmark = pytest.mark.unit


def deep(levels: int) -> object:
    value: object = "leaf"
    for i in range(levels):
        value = {"a": value} if i % 2 else [value]
    return value


def test_depth_is_measured_without_recursion() -> None:
    assert json_depth("x") == 0 and json_depth({}) == 1 and json_depth({"a": [1, {"b": []}]}) == 4
    assert json_depth(deep(MAX_JSON_DEPTH)) == MAX_JSON_DEPTH
    with pytest.raises(TooDeep):
        json_depth(deep(MAX_JSON_DEPTH + 1))
    with pytest.raises(TooDeep):
        json_depth(deep(200_000))  # far past Python's recursion limit: still just a TooDeep


def test_estimators_survive_any_depth_and_count_what_they_should() -> None:
    body = {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "x" * 400, "cache_control": {"type": "ephemeral"}},
        {"type": "image", "source": {"data": "A" * 100_000}}]}]}
    assert estimate_tokens(body["messages"]) == 100 + 1000 + 1  # text/4, a picture, the role
    assert estimate_tokens(deep(200_000)) >= 1  # bounded: no RecursionError
    parts = prompt_strings({"text": "one"}, [{"content": "two", "ignored": "x"}],
                           [{"function": {"name": "f", "parameters": {"type": "object"}}}],
                           dumps=lambda v: orjson.dumps(v).decode())
    assert parts == ["one", "two", "f", '{"type":"object"}']
    assert prompt_strings(deep(200_000), dumps=str) == []


def test_upstream_errors_are_sanitised() -> None:
    raw = ("Incorrect API key provided: sk-proj-ABCDEFGH12345678abcd for gpt-4o-mini-2024-07-18 at "
           "https://llm.internal.example.com/v1 (10.0.0.7:443), trace 9f8e7d6c5b4a39281706f5e4d3c2b1a0")
    out = sanitize(raw, upstream_model="gpt-4o-mini-2024-07-18", model="gpt-test",
                   base_url="https://llm.internal.example.com/v1")
    assert out == ("Incorrect API key provided: [redacted] for gpt-test at [upstream] ([upstream]), "
                   "trace [redacted]")
    assert sanitize("messages.0.content: too long for this model") == \
        "messages.0.content: too long for this model"
