"""user, key and code commands."""

from __future__ import annotations

from typing import Any

import click

from a2agent.cli.base import CliError, _echo_json, _usd, cli, run_async
from a2agent.services import Services
import secrets

from a2agent.auth.passwords import check_password_strength
from a2agent.billing.money import micro_to_usd


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
    keys = await services.accounts.list_keys(a.id)
    rows = [
        {
            "id": k.id,
            "name": k.name,
            "masked_key": k.masked,
            "created": k.created_at.isoformat(),
            "last_used": k.last_used_at.isoformat() if k.last_used_at else None,
        }
        for k in keys
    ]
    if as_json:
        _echo_json(rows)
        return
    for k in keys:
        used = k.last_used_at.isoformat()[:19] if k.last_used_at else "never"
        click.echo(f"{k.id:>5}  {k.name:24} {k.masked:20} created {k.created_at.isoformat()[:19]}"
                   f"  last used {used}")


@key.command("delete")
@click.argument("key_id", type=int)
@run_async
async def key_delete(services: Services, key_id: int) -> None:
    """Delete a key: the next request with it gets 401."""
    await services.accounts.delete_key(key_id)
    click.echo(f"key {key_id} deleted")


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
