"""serve, db upgrade, db verify."""

from __future__ import annotations

import sys

import click

from a2agent.cli.base import _settings, cli, run_async
from a2agent.services import Services
from a2agent.store.db import upgrade_sync


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
