"""The `a2agent` command group and what its commands share."""

from __future__ import annotations

import asyncio
import functools
import json
import sys
from typing import Any, Awaitable, Callable

import click

from a2agent.auth.accounts import Conflict, NotFound
from a2agent.billing.ledger import CodeError
from a2agent.billing.money import MoneyError, usd_to_micro
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
            # an operator's command (db verify on a large database) may take its time
            services = Services(settings.replace(db_statement_timeout=0.0))
            try:
                await services.catalog.seal_credentials()  # rows stored before sealing existed
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
