"""What a Responses client was sent before its stream broke, and the tokens the gateway must
charge for it (issue 13: output relayed to the client before an upstream failure is charged,
counted from what was relayed).

On the translated lanes the gateway sends text and reasoning as deltas, and a tool call only
as a finished item when the upstream's answer is complete, so a broken stream's calls never
reach the client as anything it can use: they are not charged.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

DELTAS = ("response.output_text.delta", "response.reasoning_text.delta")


def relayed_text(events: Iterable[dict[str, Any]]) -> str:
    """The generated text a client received in a Responses stream that ended in
    ``response.failed``."""
    parts = []
    for ev in events:
        kind = ev.get("type")
        if kind in DELTAS:
            parts.append(ev["delta"])
        elif kind == "response.output_item.done":
            assert ev["item"]["type"] in ("message", "reasoning"), "a call item finished in a broken stream"
    return "".join(parts)


def relayed_output_tokens(gateway: Any, channel: str, text: str) -> int:
    """The output tokens the gateway charges for ``text`` relayed from ``channel``: the test
    channels have no tokenizer of their own, so ≈4 characters a token."""
    assert gateway.relay.token_counter.get(channel) is None, "the test channels have no tokenizer"
    return math.ceil(len(text) / 4)


def counted_input_tokens(body: dict[str, Any]) -> int:
    """The input tokens the gateway charges when the upstream broke before it reported any: its
    own estimate of the request body."""
    from a2agent.api.routes import estimate_input_tokens

    return estimate_input_tokens(body)
