"""Tool names OpenAI accepts (<= 64 chars, [a-zA-Z0-9_-]) and the map back."""

from __future__ import annotations

import re

import pytest

from a2agent.translate.errors import TranslationError
from a2agent.translate.toolnames import (
    build_tool_name_map,
    openai_tool_name,
    original_tool_name,
)

VALID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@pytest.mark.parametrize("name", ["Bash", "read_file", "mcp__gh__create-issue", "x" * 64])
def test_valid_names_are_kept(name):
    assert openai_tool_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "mcp__" + "a" * 80,
        "mcp__server.with.dots__tool",
        "tool name with spaces",
        "x" * 65,
        "ü" * 10,
    ],
)
def test_invalid_names_are_shortened_deterministically(name):
    short = openai_tool_name(name)
    assert VALID.match(short)
    assert short == openai_tool_name(name)
    assert short != name


def test_long_names_sharing_a_prefix_stay_distinct():
    a = "mcp__server__" + "x" * 60 + "_alpha"
    b = "mcp__server__" + "x" * 60 + "_beta"
    assert openai_tool_name(a) != openai_tool_name(b)
    assert openai_tool_name(a)[:55] == openai_tool_name(b)[:55]


def test_build_tool_name_map_accepts_both_shapes():
    long = "mcp__" + "q" * 70
    anthropic_tools = [{"name": "Bash"}, {"name": long, "input_schema": {}}]
    openai_tools = [{"type": "function", "function": {"name": long}}]
    expected = {openai_tool_name(long): long}
    assert build_tool_name_map(anthropic_tools) == expected
    assert build_tool_name_map(openai_tools) == expected
    assert build_tool_name_map(None) == {}


def test_collision_after_shortening_is_a_translation_error():
    long = "mcp__" + "q" * 70
    with pytest.raises(TranslationError) as err:
        build_tool_name_map([{"name": long}, {"name": openai_tool_name(long)}])
    assert err.value.param == "tools"


def test_original_tool_name():
    assert original_tool_name("short_abc", {"short_abc": "long"}) == "long"
    assert original_tool_name("Bash", {"short_abc": "long"}) == "Bash"
    assert original_tool_name("Bash", None) == "Bash"
