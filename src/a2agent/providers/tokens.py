"""Token counting where an upstream does not report usage, and for count_tokens."""

from __future__ import annotations

import math
from typing import Any

import orjson

from a2agent.api.errors import ApiError
from a2agent.providers.upstream import UpstreamError


class HeuristicOutputCounter:
    """≈4 characters a token: used only when the upstream reported no usage."""

    source = "estimate"

    def output_tokens(self, adapter: Any, route_channel: Any = None) -> int:
        return math.ceil(adapter.output_chars / 4)


def default_output_counter() -> HeuristicOutputCounter:
    return HeuristicOutputCounter()


class TokenCounts:
    """``POST /v1/messages/count_tokens``: the upstream's own count for Anthropic channels."""

    def __init__(self, gateway: Any) -> None:
        self.gw = gateway

    async def count(self, entry: Any, body: dict[str, Any], caller_headers: dict[str, str]) -> int:
        for route in entry.routes:
            if route.channel.protocol == "anthropic" and route.channel.enabled:
                return await self._upstream_count(route, body, caller_headers)
        counter = self.gw.tokenizer
        if counter is None:
            raise ApiError(501, "Token counting is not available for this model's channel.",
                           err_type="api_error")
        from a2agent.translate.tokens import count_message_tokens

        return count_message_tokens(body, counter)

    async def _upstream_count(self, route: Any, body: dict[str, Any], caller_headers: dict[str, str]) -> int:
        payload = {k: v for k, v in body.items() if k in ("messages", "system", "tools", "tool_choice",
                                                          "thinking")}
        payload["model"] = route.upstream_model
        try:
            resp = await self.gw.pool.post(route.channel, "/v1/messages/count_tokens", orjson.dumps(payload),
                                           caller_headers=caller_headers)
            raw = await resp.read()
            resp.release()
        except UpstreamError as exc:
            raise ApiError(502, f"Upstream {exc.message}.") from None
        if resp.status >= 400:
            from a2agent.routing.relay import upstream_error_message

            raise ApiError(resp.status if resp.status < 500 else 502,
                           upstream_error_message(raw) or f"Upstream HTTP {resp.status}")
        try:
            return int(orjson.loads(raw)["input_tokens"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ApiError(502, "Upstream returned an unreadable token count.") from None
