"""One iterative walk over a JSON body, shared by every estimator and by the edge's shape check.

Nothing here recurses, so no body, however deep, can raise ``RecursionError``; callers that
need a bound pass ``max_depth`` and get :class:`TooDeep` past it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# The deepest JSON body the gateway accepts (objects and arrays count one level each). Real
# requests stay far below it (a tool's JSON schema is the deepest part, rarely past 20); it
# keeps every re-encoding (orjson stops at 255 levels) and every walk cheap and safe.
MAX_JSON_DEPTH = 64

# block types whose size is not their text (a picture or a document costs a fixed amount)
_OPAQUE = ("image", "image_url", "input_image", "document")
_SKIP_KEYS = frozenset({"cache_control", "type", "id", "tool_use_id", "signature"})


class TooDeep(ValueError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"nested deeper than {limit} levels")
        self.limit = limit


def json_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0); raises TooDeep past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        if depth > limit:
            raise TooDeep(limit)
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children if isinstance(child, (dict, list)))
    return deepest


def estimate_tokens(*values: Any, max_depth: int = MAX_JSON_DEPTH) -> int:
    """Cheap input-token estimate before usage is known: ≈4 characters a token, 1,000 a
    picture or document, at least 1. Ids, signatures and cache markers are not text."""
    chars = 0
    opaque = 0
    stack: list[tuple[Any, int]] = [(v, 0) for v in values]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            chars += len(node)
        elif depth >= max_depth:
            continue
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in node)
        elif isinstance(node, dict):
            if node.get("type") in _OPAQUE:
                opaque += 1
                continue
            stack.extend((v, depth + 1) for k, v in node.items() if k not in _SKIP_KEYS)
    return max((chars + 3) // 4 + opaque * 1000, 1)


# members whose value a model reads (for counting with a tokenizer); objects among them
# (tool schemas, tool inputs) count as their compact JSON
_PROMPT_KEYS = frozenset({"text", "content", "system", "arguments", "name", "description", "input",
                          "parameters", "input_schema", "thinking", "output"})
_PROMPT_CONTAINERS = frozenset({"function", "tool_calls"})


def prompt_strings(*values: Any, dumps: Callable[[Any], str],
                   max_depth: int = MAX_JSON_DEPTH) -> list[str]:
    """The text a model reads from request parts of either protocol, in document order."""
    out: list[str] = []
    stack: list[tuple[Any, int]] = [(v, 0) for v in reversed(values)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif depth >= max_depth:
            continue
        elif isinstance(node, list):
            stack.extend((child, depth + 1) for child in reversed(node))
        elif isinstance(node, dict):
            picked: list[Any] = []
            for k, v in node.items():
                if k in _PROMPT_KEYS:
                    picked.append(dumps(v) if isinstance(v, dict) else v)
                elif k in _PROMPT_CONTAINERS:
                    picked.append(v)
            stack.extend((v, depth + 1) for v in reversed(picked))
    return out
