"""Choose the adapter for a (caller protocol, channel protocol) pair."""

from __future__ import annotations

from typing import Any

from a2agent.api.errors import ANTHROPIC, OPENAI, ApiError
from a2agent.providers.adapters import Adapter, AnthropicPassthrough, OpenAIEmbeddings, OpenAIPassthrough
from a2agent.routing.catalog import Route

_PASSTHROUGH: dict[str, type[Adapter]] = {OPENAI: OpenAIPassthrough, ANTHROPIC: AnthropicPassthrough}


def make_adapter(ctx: Any, route: Route) -> Adapter:
    kwargs = dict(model=ctx.entry.model_id, upstream_model=route.upstream_model,
                  input_estimate=ctx.input_estimate)
    if ctx.endpoint == "embeddings":
        if route.channel.protocol != OPENAI:
            raise ApiError(400, f"The model '{ctx.entry.model_id}' does not support embeddings.",
                           code="model_not_supported", param="model")
        return OpenAIEmbeddings(ctx.body, **kwargs)
    if ctx.protocol == route.channel.protocol:
        return _PASSTHROUGH[ctx.protocol](ctx.body, **kwargs)
    from a2agent.providers.translating import translating_adapter

    return translating_adapter(ctx, route, **kwargs)
