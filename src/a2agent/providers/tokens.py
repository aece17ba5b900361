"""Token counting where an upstream does not report usage, and for count_tokens."""

from __future__ import annotations

import math
from typing import Any, Callable

import orjson

from a2agent.api.errors import ApiError
from a2agent.providers.upstream import UpstreamError
from a2agent.translate.walk import prompt_strings

Counter = Callable[[str], int]


def prompt_text(body: dict[str, Any]) -> str:
    """The text a model reads from a request body of either protocol (for counting only)."""
    parts = prompt_strings(body.get("system"), body.get("messages"), body.get("tools"),
                           body.get("instructions"), body.get("input"),  # responses
                           dumps=lambda v: orjson.dumps(v).decode())
    return "\n".join(parts)


class TokenCounters:
    """Per-channel counters for upstreams that do not report usage.

    A registered counter (e.g. the local model's own tokenizer) gives ``counted`` usage; without
    one, ≈4 characters a token gives an ``estimate``."""

    def __init__(self) -> None:
        self._by_channel: dict[str, Counter] = {}

    def register(self, channel: str, counter: Counter) -> None:
        self._by_channel[channel] = counter

    def get(self, channel: str) -> Counter | None:
        return self._by_channel.get(channel)

    def count(self, channel: str, body: dict[str, Any], output_text: str, output_chars: int,
              input_estimate: int) -> tuple[int, int, str]:
        """(input tokens, output tokens, source)."""
        counter = self._by_channel.get(channel)
        if counter is None:
            return input_estimate, math.ceil(output_chars / 4), "estimate"
        return max(counter(prompt_text(body)), 1), counter(output_text) if output_text else 0, "counted"


class _NoCountEndpoint(Exception):
    """The upstream answered 404/405 to a count: it has no count endpoint."""


class TokenCounts:
    """``POST /v1/messages/count_tokens``: the upstream's own count for Anthropic channels."""

    def __init__(self, gateway: Any) -> None:
        self.gw = gateway
        self._tokenizer: Counter | None = None

    async def count(self, entry: Any, body: dict[str, Any], caller_headers: dict[str, str]) -> int:
        for route in entry.routes:
            if route.channel.protocol == "anthropic" and route.channel.enabled:
                try:
                    return await self._upstream_count(route, body, caller_headers)
                except _NoCountEndpoint:
                    # many Anthropic-compatible upstreams have no count endpoint (404/405): our
                    # own count beats relaying a not_found_error that reads "model not found"
                    pass
                break
        from a2agent.translate.tokens import count_message_tokens

        for route in entry.routes:  # the model's own tokenizer when the gateway has it
            own = self.gw.counters.get(route.channel.name)
            if own is not None:
                return count_message_tokens(body, own)
        return count_message_tokens(body, await self._counter())

    async def _counter(self) -> Counter:
        """o200k_base from the quicktok package (vocabulary shipped in the wheel), loaded once."""
        if self._tokenizer is None:
            import asyncio

            def load() -> Counter:
                import quicktok

                return quicktok.get_encoding("o200k_base").count

            try:
                self._tokenizer = await asyncio.to_thread(load)
            except Exception as exc:  # noqa: BLE001 - no count is better than a fake one
                raise ApiError(503, f"Token counting is unavailable: {exc}", err_type="api_error") from None
        return self._tokenizer

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
            raise ApiError(504 if exc.is_timeout else 502, "The upstream could not count tokens: "
                           f"{exc.message}.", code="upstream_timeout" if exc.is_timeout
                           else "upstream_unavailable") from None
        if resp.status in (404, 405):
            raise _NoCountEndpoint  # decided on the upstream's status, before it becomes ours
        if resp.status >= 400:
            raise _count_error(resp.status, raw, resp.headers.get("retry-after"))
        try:
            return int(orjson.loads(raw)["input_tokens"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise ApiError(502, "Upstream returned an unreadable token count.") from None


def _count_error(status: int, raw: bytes, retry_after: str | None) -> ApiError:
    """An upstream's refusal of a count, as our own error: the channel's credential or an
    upstream fault is ours (502), a rate limit is a 429, the caller's mistake keeps its 4xx."""
    from a2agent.routing.relay import upstream_error_message

    if status == 429:
        return ApiError(429, "The upstream is rate limited; retry shortly.", code="upstream_rate_limited",
                        headers={"retry-after": retry_after} if retry_after else {})
    if status in (401, 403) or status >= 500:
        return ApiError(502, f"The upstream could not count tokens (HTTP {status}).", code="upstream_error",
                        err_type="api_error")
    from a2agent.routing.sanitize import sanitize

    message = sanitize(upstream_error_message(raw) or f"HTTP {status}")
    return ApiError(status if status in (400, 404, 413, 422) else 400, f"Upstream: {message}",
                    code=f"upstream_{status}")
