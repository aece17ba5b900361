"""channel and model commands."""

from __future__ import annotations

import sys
from typing import Any, Callable

import click

from a2agent.cli.base import CliError, _echo_json, _usd, cli, run_async
from a2agent.services import Services
from a2agent.billing.money import Prices, micro_to_usd


# ---- channels ---------------------------------------------------------------------------
@cli.group()
def channel() -> None:
    """Upstream channels."""


def _channel_tuning(f: Callable[..., Any]) -> Callable[..., Any]:
    """Per-channel limits shared by `channel add` and `channel update`."""
    for name, kind, text in (
        ("--connect-timeout", float, "Seconds to connect."),
        ("--first-byte-timeout", float, "Seconds from request to response headers."),
        ("--idle-timeout", float, "Seconds allowed between stream chunks."),
        ("--total-timeout", float, "Seconds for the whole exchange."),
        ("--max-concurrency", int, "Requests in flight to this channel (per instance)."),
        ("--max-queue", int, "Requests waiting when at --max-concurrency; more get 429."),
        ("--max-response-bytes", int, "Largest upstream response."),
    ):
        f = click.option(name, type=click.FloatRange(min=0.001) if kind is float else click.IntRange(min=0),
                         default=None, help=text)(f)
    return f


def _tuning_values(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


@channel.command("add")
@click.argument("name")
@click.option("--protocol", type=click.Choice(["openai", "anthropic", "responses"]), required=True,
              help="The upstream's API: openai = Chat Completions (POST <base>/chat/completions); "
                   "anthropic = Messages (POST <base>/v1/messages); responses = the OpenAI Responses API "
                   "(POST <base>/responses), used only by POST /v1/responses callers, relayed as it "
                   "comes (Chat and Messages callers are routed to the model's other channels).")
@click.option("--base-url", required=True,
              help="OpenAI and responses channels include /v1; Anthropic channels do not.")
@click.option("--api-key", default=None, help="The upstream's credential.")
@click.option("--priority", type=int, default=0, help="Higher is tried first.")
@click.option("--weight", type=click.IntRange(min=1), default=1)
@click.option("--reasoning", is_flag=True, help="Upstream accepts OpenAI reasoning_effort.")
@_channel_tuning
@run_async
async def channel_add(services: Services, name: str, protocol: str, base_url: str,
                      api_key: str | None, priority: int, weight: int, reasoning: bool, **tuning: Any) -> None:
    """Add an upstream channel."""
    await services.catalog.add_channel(name, protocol=protocol, base_url=base_url, api_key=api_key,
                                       priority=priority, weight=weight, supports_reasoning=reasoning)
    if values := _tuning_values(**tuning):
        await services.catalog.update_channel(name, **values)
    click.echo(f"channel {name} added ({protocol}, {base_url})")


@channel.command("update")
@click.argument("name")
@click.option("--base-url", default=None)
@click.option("--api-key", default=None)
@click.option("--priority", type=int, default=None)
@click.option("--weight", type=click.IntRange(min=1), default=None)
@click.option("--enable/--disable", "enabled", default=None, help="Take the channel in or out of service.")
@_channel_tuning
@run_async
async def channel_update(services: Services, name: str, **values: Any) -> None:
    """Change a channel; takes effect on the next request everywhere."""
    changes = _tuning_values(**values)
    if not changes:
        raise CliError("nothing to change: give at least one option")
    await services.catalog.update_channel(name, **changes)
    click.echo(f"channel {name} updated: {', '.join(sorted(changes))}")


@channel.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@run_async
async def channel_list(services: Services, as_json: bool) -> None:
    """List channels with circuit state, recent error rate and latency (credentials never shown)."""
    from a2agent.routing.status import channel_status

    status = await channel_status(services)
    rows = []
    for c in await services.catalog.list_channels():
        st = status.get(c.name, {})
        rows.append({
            "name": c.name,
            "protocol": c.protocol,
            "base_url": c.base_url,
            "priority": c.priority,
            "weight": c.weight,
            "enabled": c.enabled,
            "has_api_key": bool(c.api_key),
            "circuit": st.get("circuit", "closed"),
            "requests_15m": st.get("requests_15m", 0),
            "error_rate_15m": st.get("error_rate_15m"),
            "p50_ttfb_ms": st.get("p50_ttfb_ms"),
        })
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        err = "-" if r["error_rate_15m"] is None else f"{r['error_rate_15m']:.0%}"
        lat = "-" if r["p50_ttfb_ms"] is None else f"{r['p50_ttfb_ms']} ms"
        click.echo(f"{r['name']:16} {r['protocol']:9} {r['base_url']:36} prio {r['priority']:<3} "
                   f"weight {r['weight']:<3} {'enabled ' if r['enabled'] else 'disabled'} "
                   f"circuit {r['circuit']:8} 15m: {r['requests_15m']} req, errors {err}, p50 {lat}")


@channel.command("test")
@click.argument("name")
@run_async
async def channel_test(services: Services, name: str) -> None:
    """Send a tiny real request (1 output token) to the channel and report the outcome."""
    from types import SimpleNamespace

    from a2agent.providers.upstream import UpstreamPool
    from a2agent.routing.probe import probe_channel

    await services.catalog.get_channel(name)  # NotFound → one clear line
    pool = UpstreamPool(services.settings)
    try:
        result = await probe_channel(SimpleNamespace(services=services, settings=services.settings, pool=pool),
                                     name)
    finally:
        await pool.close()
    status = result["status"] if result["status"] is not None else "-"
    click.echo(f"{name}: {'ok' if result['ok'] else 'FAILED'} (HTTP {status}, {result['latency_ms']} ms) "
               f"{result['message']}")
    if not result["ok"]:
        sys.exit(1)


@channel.command("remove")
@click.argument("name")
@run_async
async def channel_remove(services: Services, name: str) -> None:
    """Remove a channel and its routes."""
    await services.catalog.remove_channel(name)
    click.echo(f"channel {name} removed")


# ---- models -----------------------------------------------------------------------------
@cli.group()
def model() -> None:
    """Public models, routes and prices."""


@model.command("add")
@click.argument("model_id")
@click.option("--channel", "channel_name", required=True)
@click.option("--upstream-model", default=None, help="The upstream's name (default: MODEL_ID).")
@click.option("--input-price", required=True, help="USD per 1M input tokens.")
@click.option("--output-price", required=True, help="USD per 1M output tokens.")
@click.option("--cache-read-price", default=None, help="USD per 1M cache-read tokens (default: unchanged, or the input price for a new model).")
@click.option("--cache-write-price", default=None, help="USD per 1M cache-write tokens (default: unchanged, or the input price for a new model).")
@click.option("--context-window", type=click.IntRange(min=1), default=None)
@click.option("--max-output", type=click.IntRange(min=1), default=None,
              help="The upstream's largest answer in tokens: callers' max_tokens above it are lowered to it "
                   "(e.g. Claude Code's 32000+ for an OpenAI-protocol model that allows 8192).")
@run_async
async def model_add(services: Services, model_id: str, channel_name: str, upstream_model: str | None,
                    input_price: str, output_price: str, cache_read_price: str | None,
                    cache_write_price: str | None, context_window: int | None, max_output: int | None) -> None:
    """Add a model, or another channel route for an existing one."""
    pin = _usd(input_price, what="input price")
    existing = {m.model_id: m for m in await services.catalog.list_models()}.get(model_id)

    def cache_rate(value: str | None, what: str, current: int | None) -> int:
        if value is not None:
            return _usd(value, what=what)
        return current if current is not None else pin  # keep a model's rate; new models: input rate

    prices = Prices(
        input=pin,
        output=_usd(output_price, what="output price"),
        cache_read=cache_rate(cache_read_price, "cache read price",
                              existing.prices.cache_read if existing else None),
        cache_write=cache_rate(cache_write_price, "cache write price",
                               existing.prices.cache_write if existing else None),
    )
    await services.catalog.add_model(model_id, channel=channel_name, prices=prices,
                                     upstream_model=upstream_model, context_window=context_window,
                                     max_output_tokens=max_output)
    click.echo(f"model {model_id} -> channel {channel_name} ({upstream_model or model_id})")


@model.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@run_async
async def model_list(services: Services, as_json: bool) -> None:
    """List models with prices (USD per 1M tokens) and routes."""
    models = await services.catalog.list_models()
    rows = [
        {
            "id": m.model_id,
            "context_window": m.context_window,
            "max_output_tokens": m.max_output_tokens,
            "input_price": micro_to_usd(m.prices.input),
            "output_price": micro_to_usd(m.prices.output),
            "cache_read_price": micro_to_usd(m.prices.cache_read),
            "cache_write_price": micro_to_usd(m.prices.cache_write),
            "routes": [
                {"channel": r.channel.name, "upstream_model": r.upstream_model,
                 "protocol": r.channel.protocol, "priority": r.priority, "weight": r.weight}
                for r in m.routes
            ],
        }
        for m in models
    ]
    if as_json:
        _echo_json(rows)
        return
    for m in models:
        routes = ", ".join(f"{x.channel.name}:{x.upstream_model}" for x in m.routes)
        click.echo(f"{m.model_id:32} in {micro_to_usd(m.prices.input)} "
                   f"out {micro_to_usd(m.prices.output)} per 1M  [{routes}]")


@model.command("remove")
@click.argument("model_id")
@run_async
async def model_remove(services: Services, model_id: str) -> None:
    """Remove a model from the catalogue."""
    await services.catalog.remove_model(model_id)
    click.echo(f"model {model_id} removed")
