"""Choose the adapter for a (caller protocol, channel protocol) pair."""

from __future__ import annotations

from typing import Any

from a2agent.api.errors import ANTHROPIC, OPENAI, RESPONSES, ApiError
from a2agent.providers.adapters import (
    Adapter,
    AnthropicPassthrough,
    OpenAIEmbeddings,
    OpenAIPassthrough,
)
from a2agent.routing.catalog import Route

_PASSTHROUGH: dict[str, type[Adapter]] = {OPENAI: OpenAIPassthrough, ANTHROPIC: AnthropicPassthrough}


def make_adapter(ctx: Any, route: Route) -> Adapter:
    kwargs = {"model": ctx.entry.model_id, "upstream_model": route.upstream_model,
              "input_estimate": ctx.input_estimate, "max_output": ctx.entry.max_output_tokens}
    if ctx.endpoint == "embeddings":
        if route.channel.protocol != OPENAI:
            raise ApiError(400, f"The model '{ctx.entry.model_id}' does not support embeddings.",
                           code="model_not_supported", param="model")
        return OpenAIEmbeddings(ctx.body, **kwargs)
    if ctx.protocol == RESPONSES:
        from a2agent.providers.responses import responses_adapter

        return responses_adapter(ctx, route, **kwargs)
    if route.channel.protocol == RESPONSES:
        raise ApiError(400, f"The model '{ctx.entry.model_id}' is only served through POST /v1/responses "
                            "on this channel.", code="unsupported_protocol", param="model")
    if ctx.protocol == route.channel.protocol:
        return _PASSTHROUGH[ctx.protocol](ctx.body, **kwargs)
    from a2agent.providers.translating import translating_adapter

    return translating_adapter(ctx, route, **kwargs)
