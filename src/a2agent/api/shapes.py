"""The body shape the data plane accepts, checked at the edge (400 in the caller's protocol).

Only the types of well-known members are checked (unknown members pass through untouched): a
member of the wrong type is the caller's mistake and must be refused here, not trip a
translation or an estimator further in. ``null`` is accepted wherever a member is optional.
"""

from __future__ import annotations

from typing import Any

from a2agent.api.errors import ApiError

_INT = (int,)
_NUMBER = (int, float)

# member → (accepted types, what to call them in the error)
_TOP: dict[str, tuple[tuple[type, ...], str]] = {
    "tools": ((list,), "an array of tool objects"),
    "tool_choice": ((str, dict), "a string or an object"),
    "system": ((str, list), "a string or an array of content blocks"),
    "max_tokens": (_INT, "an integer"),
    "max_completion_tokens": (_INT, "an integer"),
    "max_output_tokens": (_INT, "an integer"),
    "n": (_INT, "an integer"),
    "top_k": (_INT, "an integer"),
    "seed": (_INT, "an integer"),
    "temperature": (_NUMBER, "a number"),
    "top_p": (_NUMBER, "a number"),
    "presence_penalty": (_NUMBER, "a number"),
    "frequency_penalty": (_NUMBER, "a number"),
    "stop": ((str, list), "a string or an array of strings"),
    "stop_sequences": ((list,), "an array of strings"),
    "reasoning_effort": ((str,), "a string"),
    "stream_options": ((dict,), "an object"),
    "metadata": ((dict,), "an object"),
    "response_format": ((dict,), "an object"),
    "thinking": ((dict,), "an object"),
    "output_config": ((dict,), "an object"),
    "user": ((str,), "a string"),
    "parallel_tool_calls": ((bool,), "a boolean"),
    "reasoning": ((dict,), "an object"),  # responses
    "text": ((dict,), "an object"),  # responses
    "include": ((list,), "an array"),  # responses
}
_STRING_LISTS = ("stop", "stop_sequences")
_OBJECT_LISTS = ("tools", "system")


def _bad(param: str, what: str) -> ApiError:
    return ApiError(400, f"{param}: must be {what}", param=param, code="invalid_type")


def _is(value: Any, kinds: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in kinds
    return isinstance(value, kinds)


def check_shape(body: dict[str, Any]) -> None:
    """Raise a 400 ApiError for the first well-known member of the wrong type."""
    for name, (kinds, what) in _TOP.items():
        value = body.get(name)
        if value is None:
            continue
        if not _is(value, kinds):
            raise _bad(name, what)
        if name in _STRING_LISTS and isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise _bad(name, what)
        if name in _OBJECT_LISTS and isinstance(value, list) and not all(isinstance(v, dict) for v in value):
            raise _bad(name, "an array of objects" if name == "tools" else what)
    messages = body.get("messages")
    for i, msg in enumerate(messages if isinstance(messages, list) else ()):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise ApiError(400, f"messages.{i}: each message needs a 'role'", param=f"messages[{i}]")
        content = msg.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise _bad(f"messages.{i}.content", "a string or an array of content blocks")
        if isinstance(content, list):
            for j, block in enumerate(content):
                if not isinstance(block, dict):
                    raise _bad(f"messages.{i}.content.{j}", "an object")
        calls = msg.get("tool_calls")
        if calls is not None and not (isinstance(calls, list) and all(isinstance(c, dict) for c in calls)):
            raise _bad(f"messages.{i}.tool_calls", "an array of objects")
