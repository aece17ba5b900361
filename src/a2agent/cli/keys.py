"""`a2agent key update`: the per-key controls (rename, disable, spend cap, models, expiry)."""

from __future__ import annotations

from typing import Any

import click

from a2agent.auth.controls import parse_expiry
from a2agent.billing.money import micro_to_usd
from a2agent.cli.accounts import key
from a2agent.cli.base import CliError, _echo_json, _usd, run_async
from a2agent.services import Services


def key_json(k: Any) -> dict[str, Any]:
    return {
        "id": k.id, "name": k.name, "masked_key": k.masked, "disabled": k.disabled,
        "spend_cap_usd": micro_to_usd(k.spend_cap_micro) if k.spend_cap_micro else None,
        "spend_cap_period": k.spend_cap_period, "allowed_models": k.model_list or None,
        "expires": k.expires_at.isoformat() if k.expires_at else None,
    }


@key.command("update")
@click.argument("key_id", type=int)
@click.option("--name", default=None, help="Rename the key.")
@click.option("--disable/--enable", "disabled", default=None,
              help="Switch the key off (403 key_disabled) or on again.")
@click.option("--cap", default=None, help="Spend cap in USD; 'none' removes it.")
@click.option("--cap-period", type=click.Choice(["total", "monthly"]), default=None,
              help="What the cap counts: all spend, or this calendar month's (UTC).")
@click.option("--models", default=None,
              help="Comma-separated model ids this key may call; 'all' removes the list.")
@click.option("--expires", default=None,
              help="Expiry: YYYY-MM-DD (end of day UTC) or ISO timestamp; 'never' removes it.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@run_async
async def key_update(services: Services, key_id: int, name: str | None, disabled: bool | None,
                     cap: str | None, cap_period: str | None, models: str | None,
                     expires: str | None, as_json: bool) -> None:
    """Change a key's controls; every instance applies them on the next request."""
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if disabled is not None:
        changes["disabled"] = disabled
    if cap is not None:
        changes["spend_cap_micro"] = None if cap.lower() == "none" else _usd(cap, what="cap")
    if cap_period is not None:
        changes["spend_cap_period"] = cap_period
    if models is not None:
        changes["allowed_models"] = (None if models.lower() == "all"
                                     else [m for m in models.split(",") if m.strip()])
    if expires is not None:
        changes["expires_at"] = None if expires.lower() == "never" else parse_expiry(expires)
    if not changes:
        raise CliError("nothing to change: give at least one option (see --help)")
    if changes.get("allowed_models"):
        known = {m.model_id for m in await services.catalog.list_models()}
        unknown = sorted({m.strip() for m in changes["allowed_models"]} - known)
        if unknown:
            raise CliError(f"unknown model(s): {', '.join(unknown)}")
    k = await services.accounts.update_key(key_id, **changes)
    if as_json:
        _echo_json(key_json(k))
        return
    click.echo(f"key {k.id} ({k.name}) updated")
