"""Usage normalisation: every token counted exactly once, both directions."""

from __future__ import annotations

import pytest

from a2agent.translate.usage import (
    Usage,
    usage_from_anthropic,
    usage_from_openai,
    usage_to_anthropic,
    usage_to_openai,
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}, Usage(100, 20)),
        (
            {
                "prompt_tokens": 1000,
                "completion_tokens": 50,
                "total_tokens": 1050,
                "prompt_tokens_details": {"cached_tokens": 800, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 30},
            },
            Usage(200, 50, cache_read_tokens=800),
        ),
        (  # newer field: cache writes are part of prompt_tokens too
            {
                "prompt_tokens": 1000,
                "completion_tokens": 5,
                "prompt_tokens_details": {"cached_tokens": 600, "cache_write_tokens": 300},
            },
            Usage(100, 5, cache_read_tokens=600, cache_write_tokens=300),
        ),
        (  # DeepSeek
            {
                "prompt_tokens": 500,
                "completion_tokens": 9,
                "prompt_cache_hit_tokens": 448,
                "prompt_cache_miss_tokens": 52,
            },
            Usage(52, 9, cache_read_tokens=448),
        ),
        (  # DeepSeek fields without prompt_tokens
            {"completion_tokens": 1, "prompt_cache_hit_tokens": 10, "prompt_cache_miss_tokens": 5},
            Usage(5, 1, cache_read_tokens=10),
        ),
        (  # details null, as some servers send
            {"prompt_tokens": 7, "completion_tokens": 3, "prompt_tokens_details": None},
            Usage(7, 3),
        ),
        (  # inconsistent upstream: cached > prompt never goes negative
            {"prompt_tokens": 5, "completion_tokens": 0, "prompt_tokens_details": {"cached_tokens": 9}},
            Usage(0, 0, cache_read_tokens=9),
        ),
        (None, None),
        ({}, None),
        ("nonsense", None),
    ],
)
def test_usage_from_openai(raw, expected):
    assert usage_from_openai(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"input_tokens": 25, "output_tokens": 15}, Usage(25, 15)),
        (
            {
                "input_tokens": 12,
                "cache_creation_input_tokens": 3000,
                "cache_read_input_tokens": 9000,
                "output_tokens": 400,
                "service_tier": "standard",
            },
            Usage(12, 400, cache_read_tokens=9000, cache_write_tokens=3000),
        ),
        ({"input_tokens": 5, "output_tokens": 1, "cache_read_input_tokens": None}, Usage(5, 1)),
        ({"output_tokens": 9}, Usage(0, 9)),
        (None, None),
        ({"service_tier": "standard"}, None),
    ],
)
def test_usage_from_anthropic(raw, expected):
    assert usage_from_anthropic(raw) == expected


def test_usage_to_openai_includes_cached_tokens_in_prompt():
    u = Usage(input_tokens=200, output_tokens=50, cache_read_tokens=800)
    assert usage_to_openai(u) == {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "total_tokens": 1050,
        "prompt_tokens_details": {"cached_tokens": 800},
    }


def test_usage_to_openai_reports_cache_writes_when_present():
    out = usage_to_openai(Usage(1, 2, cache_read_tokens=3, cache_write_tokens=4))
    assert out["prompt_tokens"] == 8
    assert out["prompt_tokens_details"] == {"cached_tokens": 3, "cache_write_tokens": 4}


def test_usage_to_anthropic_excludes_cache_from_input():
    u = Usage(input_tokens=12, output_tokens=400, cache_read_tokens=9000, cache_write_tokens=3000)
    assert usage_to_anthropic(u) == {
        "input_tokens": 12,
        "cache_creation_input_tokens": 3000,
        "cache_read_input_tokens": 9000,
        "output_tokens": 400,
    }


@pytest.mark.parametrize(
    "u", [Usage(0, 0), Usage(1, 2), Usage(10, 20, 30, 40), Usage(0, 5, cache_read_tokens=99)]
)
def test_round_trips_preserve_every_count(u):
    assert usage_from_openai(usage_to_openai(u)) == u
    assert usage_from_anthropic(usage_to_anthropic(u)) == u


def test_usage_total_and_addition():
    a = Usage(10, 5, cache_read_tokens=100, cache_write_tokens=1)
    b = Usage(1, 2, cache_read_tokens=3, cache_write_tokens=4)
    assert a.prompt_tokens == 111
    assert a.total == 116
    assert a + b == Usage(11, 7, cache_read_tokens=103, cache_write_tokens=5)
    with pytest.raises(TypeError):
        a + 1  # noqa: B018
