"""`a2agent` command line: serve, database, and every admin action.

Bad input exits non-zero with one clear line on stderr (configuration errors exit 2).
"""

from __future__ import annotations

import asyncio
import functools
import json
import secrets
import sys
from typing import Any, Awaitable, Callable

import click

from a2agent.auth.accounts import Conflict, NotFound, masked
from a2agent.auth.passwords import check_password_strength
from a2agent.billing.ledger import CodeError
from a2agent.billing.money import MoneyError, Prices, micro_to_usd, usd_to_micro
from a2agent.config import ConfigError, Settings, load_settings
from a2agent.services import Services
from a2agent.store.db import upgrade_sync


class CliError(click.ClickException):
    exit_code = 1

    def show(self, file: Any = None) -> None:  # one line, no usage dump
        click.echo(f"error: {self.format_message()}", err=True)


def _settings(ctx: click.Context, **overrides: Any) -> Settings:
    try:
        return load_settings(ctx.obj.get("config"), overrides=overrides)
    except ConfigError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)


def run_async(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    """Run an async command body with a Services container on an up-to-date database."""

    @functools.wraps(fn)
    @click.pass_context
    def wrapper(ctx: click.Context, *args: Any, **kwargs: Any) -> Any:
        settings = _settings(ctx)
        upgrade_sync(settings.database_url)

        async def main() -> Any:
            services = Services(settings)
            try:
                return await fn(services, *args, **kwargs)
            finally:
                await services.close()

        try:
            return asyncio.run(main())
        except (NotFound, Conflict, CodeError, MoneyError, ValueError) as exc:
            raise CliError(str(exc)) from None

    return wrapper


def _usd(value: str, *, allow_negative: bool = False, what: str = "amount") -> int:
    try:
        return usd_to_micro(value, allow_negative=allow_negative)
    except MoneyError as exc:
        raise CliError(f"bad {what}: {exc}") from None


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="TOML settings file (default: $A2AGENT_CONFIG).")
@click.version_option(package_name="a2agent")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """A2Agent — multi-tenant LLM API gateway."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


# ---- serve ------------------------------------------------------------------------------
@cli.command()
@click.option("--host", default=None, help="Interface to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option("--workers", type=int, default=None, help="Worker processes (default 1).")
@click.option("--no-local-model", is_flag=True, help="Do not start the embedded local model.")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int | None,
          no_local_model: bool) -> None:
    """Run the gateway (API + console)."""
    settings = _settings(ctx, host=host, port=port, workers=workers,
                         local_model=False if no_local_model else None)
    from a2agent.server import run_server

    run_server(settings, config_file=ctx.obj.get("config"))


# ---- db ---------------------------------------------------------------------------------
@cli.group()
def db() -> None:
    """Database schema and consistency."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Apply schema migrations."""
    settings = _settings(ctx)
    upgrade_sync(settings.database_url)
    click.echo("database is up to date")


@db.command("verify")
@run_async
async def db_verify(services: Services) -> None:
    """Recompute balances from the ledger and charges from request records."""
    from a2agent.billing.verify import verify

    problems = await verify(services.db)
    for line in problems:
        click.echo(line)
    if problems:
        click.echo(f"{len(problems)} problem(s) found", err=True)
        sys.exit(1)
    click.echo("ledger and charges verified: no problems")


# ---- users ------------------------------------------------------------------------------
@cli.group()
def user() -> None:
    """Accounts."""


def _account_json(a: Any) -> dict[str, Any]:
    return {
        "id": a.id,
        "email": a.email,
        "role": a.role,
        "admin": a.role == "admin",
        "suspended": a.suspended,
        "balance_micro_usd": a.balance_micro,
        "balance_usd": micro_to_usd(a.balance_micro),
        "rpm_limit": a.rpm_limit,
        "tpm_limit": a.tpm_limit,
        "created": a.created_at.isoformat(),
    }


@user.command("create")
@click.argument("email")
@click.option("--password", default=None, help="Password (generated and printed when omitted).")
@click.option("--admin", is_flag=True, help="Make the account an administrator.")
@click.option("--balance", default=None, help="Initial balance in USD.")
@run_async
async def user_create(services: Services, email: str, password: str | None, admin: bool,
                      balance: str | None) -> None:
    """Create an account."""
    amount = _usd(balance, what="balance") if balance is not None else 0
    generated = password is None
    if generated:
        password = secrets.token_urlsafe(12)
    reason = check_password_strength(password or "")
    if reason:
        raise CliError(reason)
    account = await services.accounts.create(email, password, admin=admin)
    if amount:
        await services.ledger.adjust(account.id, amount, note="initial balance")
    click.echo(f"created {'admin' if admin else 'user'} {account.email} (id {account.id})")
    if generated:
        click.echo(f"password: {password}")


@user.command("show")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@run_async
async def user_show(services: Services, email: str, as_json: bool) -> None:
    """Show one account."""
    a = await services.accounts.by_email(email)
    data = _account_json(a)
    data["keys"] = len(await services.accounts.list_keys(a.id))
    if as_json:
        _echo_json(data)
        return
    for k, v in data.items():
        click.echo(f"{k:18} {v}")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@run_async
async def user_list(services: Services, as_json: bool) -> None:
    """List accounts."""
    rows = [_account_json(a) for a in await services.accounts.list()]
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        flags = ("admin " if r["admin"] else "") + ("SUSPENDED" if r["suspended"] else "")
        click.echo(f"{r['id']:>5}  {r['email']:40} {r['balance_usd']:>16} USD  {flags}")


@user.command("topup", context_settings={"ignore_unknown_options": True})
@click.argument("email")
@click.argument("usd")
@click.option("--note", default=None, help="Note kept in the ledger.")
@run_async
async def user_topup(services: Services, email: str, usd: str, note: str | None) -> None:
    """Add USD to a balance (a negative amount is an adjustment)."""
    amount = _usd(usd, allow_negative=True)
    a = await services.accounts.by_email(email)
    after = await services.ledger.adjust(a.id, amount, note=note)
    click.echo(f"{a.email}: balance {micro_to_usd(after)} USD")


@user.command("suspend")
@click.argument("email")
@run_async
async def user_suspend(services: Services, email: str) -> None:
    """Suspend an account: its keys are refused at once."""
    a = await services.accounts.by_email(email)
    await services.accounts.set_suspended(a.id, True)
    click.echo(f"{a.email} suspended")


@user.command("unsuspend")
@click.argument("email")
@run_async
async def user_unsuspend(services: Services, email: str) -> None:
    """Lift a suspension."""
    a = await services.accounts.by_email(email)
    await services.accounts.set_suspended(a.id, False)
    click.echo(f"{a.email} unsuspended")


@user.command("limits")
@click.argument("email")
@click.option("--rpm", type=click.IntRange(min=0), default=None, help="Requests per minute (0 = unlimited).")
@click.option("--tpm", type=click.IntRange(min=0), default=None, help="Tokens per minute (0 = unlimited).")
@click.option("--concurrency", type=click.IntRange(min=0), default=None,
              help="Concurrent requests (0 = unlimited).")
@run_async
async def user_limits(services: Services, email: str, rpm: int | None, tpm: int | None,
                      concurrency: int | None) -> None:
    """Set per-account rate limits."""
    a = await services.accounts.by_email(email)
    await services.accounts.set_limits(a.id, rpm=rpm, tpm=tpm, concurrency=concurrency)
    a = await services.accounts.by_email(email)
    click.echo(f"{a.email}: rpm {a.rpm_limit or 'default'}, tpm {a.tpm_limit or 'default'}, "
               f"concurrency {a.max_concurrency or 'default'}")


# ---- keys -------------------------------------------------------------------------------
@cli.group()
def key() -> None:
    """API keys."""


@key.command("create")
@click.argument("email")
@click.option("--label", default=None, help="A name for the key.")
@run_async
async def key_create(services: Services, email: str, label: str | None) -> None:
    """Create a key; it is printed once, alone on the last line."""
    a = await services.accounts.by_email(email)
    record, value = await services.accounts.create_key(a.id, label)
    click.echo(f"created key {record.id} ({record.name}) for {a.email}; it will not be shown again:")
    click.echo(value)


@key.command("list")
@click.argument("email")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@run_async
async def key_list(services: Services, email: str, as_json: bool) -> None:
    """List an account's keys (masked)."""
    a = await services.accounts.by_email(email)
    rows = [
        {
            "id": k.id,
            "name": k.name,
            "masked_key": masked(k),
            "created": k.created_at.isoformat(),
            "last_used": k.last_used_at.isoformat() if k.last_used_at else None,
        }
        for k in await services.accounts.list_keys(a.id)
    ]
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['id']:>5}  {r['name']:24} {r['masked_key']:20} created {r['created'][:19]}"
                   f"  last used {(r['last_used'] or 'never')[:19]}")


@key.command("delete")
@click.argument("key_id", type=int)
@run_async
async def key_delete(services: Services, key_id: int) -> None:
    """Delete a key: the next request with it gets 401."""
    await services.accounts.delete_key(key_id)
    click.echo(f"key {key_id} deleted")


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
@click.option("--protocol", type=click.Choice(["openai", "anthropic"]), required=True)
@click.option("--base-url", required=True,
              help="OpenAI channels include /v1; Anthropic channels do not.")
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
@run_async
async def model_add(services: Services, model_id: str, channel_name: str, upstream_model: str | None,
                    input_price: str, output_price: str, cache_read_price: str | None,
                    cache_write_price: str | None, context_window: int | None) -> None:
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
                                     upstream_model=upstream_model, context_window=context_window)
    click.echo(f"model {model_id} -> channel {channel_name} ({upstream_model or model_id})")


@model.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@run_async
async def model_list(services: Services, as_json: bool) -> None:
    """List models with prices (USD per 1M tokens) and routes."""
    rows = [
        {
            "id": m.model_id,
            "context_window": m.context_window,
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
        for m in await services.catalog.list_models()
    ]
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        routes = ", ".join(f"{x['channel']}:{x['upstream_model']}" for x in r["routes"])
        click.echo(f"{r['id']:32} in {r['input_price']} out {r['output_price']} per 1M  [{routes}]")


@model.command("remove")
@click.argument("model_id")
@run_async
async def model_remove(services: Services, model_id: str) -> None:
    """Remove a model from the catalogue."""
    await services.catalog.remove_model(model_id)
    click.echo(f"model {model_id} removed")


# ---- codes ------------------------------------------------------------------------------
@cli.group()
def code() -> None:
    """Single-use top-up codes."""


@code.command("create", context_settings={"ignore_unknown_options": True})
@click.argument("usd")
@click.option("--count", type=click.IntRange(1, 1000), default=1)
@run_async
async def code_create(services: Services, usd: str, count: int) -> None:
    """Create COUNT codes worth USD each; printed one per line."""
    for c in await services.ledger.create_codes(_usd(usd), count):
        click.echo(c)


@code.command("redeem")
@click.argument("email")
@click.argument("code_value", metavar="CODE")
@run_async
async def code_redeem(services: Services, email: str, code_value: str) -> None:
    """Redeem a code into an account."""
    a = await services.accounts.by_email(email)
    amount = await services.ledger.redeem(a.id, code_value)
    click.echo(f"redeemed {micro_to_usd(amount)} USD into {a.email}")


def main() -> None:
    cli(prog_name="a2agent")


if __name__ == "__main__":
    main()
