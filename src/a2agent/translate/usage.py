"""One usage shape for both protocols, each token counted exactly once.

The two protocols disagree on what "input" means:

* OpenAI ``prompt_tokens`` is the *whole* prompt: it INCLUDES
  ``prompt_tokens_details.cached_tokens`` (and the rarely populated
  ``cache_write_tokens``).
* Anthropic ``input_tokens`` is only the *uncached* part: the whole prompt is
  ``input_tokens + cache_read_input_tokens + cache_creation_input_tokens``.

:class:`Usage` stores the disjoint parts, so billing can price each part once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    """Token counts of one request; the four fields never overlap."""

    input_tokens: int  # uncached input only
    output_tokens: int  # includes reasoning / thinking tokens
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def prompt_tokens(self) -> int:
        """The whole prompt, cached parts included (OpenAI's ``prompt_tokens``)."""
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.output_tokens

    def __add__(self, other: object) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cache_read_tokens=self.cache_read_tokens + other.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens + other.cache_write_tokens,
        )


def _int(value: Any) -> int:
    """A non-negative int from a JSON value; anything else (None, str, bool) is 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return max(int(value), 0)


def usage_from_openai(u: dict[str, Any] | None) -> Usage | None:
    """Normalise an OpenAI ``usage`` object; ``None`` when absent or empty.

    DeepSeek reports ``prompt_cache_hit_tokens`` / ``prompt_cache_miss_tokens``
    instead of (or besides) ``prompt_tokens_details.cached_tokens``; the hit
    count is used when the standard field is missing.
    """
    if not isinstance(u, dict):
        return None
    known = ("prompt_tokens", "completion_tokens", "total_tokens", "prompt_cache_hit_tokens")
    if not any(k in u for k in known):
        return None
    details = u.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    cached = _int(details.get("cached_tokens"))
    if not cached and "prompt_cache_hit_tokens" in u:
        cached = _int(u.get("prompt_cache_hit_tokens"))
    cache_write = _int(details.get("cache_write_tokens"))
    if "prompt_tokens" in u:
        prompt = _int(u.get("prompt_tokens"))
    else:  # DeepSeek-only shape: hit + miss is the whole prompt
        prompt = cached + _int(u.get("prompt_cache_miss_tokens"))
    return Usage(
        input_tokens=max(prompt - cached - cache_write, 0),
        output_tokens=_int(u.get("completion_tokens")),
        cache_read_tokens=cached,
        cache_write_tokens=cache_write,
    )


def usage_from_anthropic(u: dict[str, Any] | None) -> Usage | None:
    """Normalise an Anthropic ``usage`` object; ``None`` when absent or empty."""
    if not isinstance(u, dict):
        return None
    if "input_tokens" not in u and "output_tokens" not in u:
        return None
    return Usage(
        input_tokens=_int(u.get("input_tokens")),
        output_tokens=_int(u.get("output_tokens")),
        cache_read_tokens=_int(u.get("cache_read_input_tokens")),
        cache_write_tokens=_int(u.get("cache_creation_input_tokens")),
    )


def usage_to_openai(u: Usage) -> dict[str, Any]:
    """OpenAI chat ``usage``: ``prompt_tokens`` includes the cached parts."""
    details: dict[str, int] = {"cached_tokens": u.cache_read_tokens}
    if u.cache_write_tokens:
        details["cache_write_tokens"] = u.cache_write_tokens
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.output_tokens,
        "total_tokens": u.total,
        "prompt_tokens_details": details,
    }


def usage_to_anthropic(u: Usage) -> dict[str, Any]:
    """Anthropic ``usage``: ``input_tokens`` excludes the cached parts."""
    return {
        "input_tokens": u.input_tokens,
        "cache_creation_input_tokens": u.cache_write_tokens,
        "cache_read_input_tokens": u.cache_read_tokens,
        "output_tokens": u.output_tokens,
    }
