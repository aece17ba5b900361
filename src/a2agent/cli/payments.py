"""`a2agent payments list`: card payments (Stripe Checkout top-ups)."""

from __future__ import annotations

import click

from a2agent.billing.money import micro_to_usd
from a2agent.billing.payments import Payments
from a2agent.cli.base import _echo_json, cli, run_async
from a2agent.services import Services


@cli.group()
def payments() -> None:
    """Card payments through Stripe Checkout."""


@payments.command("list")
@click.option("--email", default=None, help="Only this account's payments.")
@click.option("--all", "include_open", is_flag=True,
              help="Include sessions that were not paid (open, processing, failed, expired).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=200)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@run_async
async def payments_list(services: Services, email: str | None, include_open: bool, limit: int,
                        as_json: bool) -> None:
    """List payments, newest first (works whether or not Stripe is configured now)."""
    account_id = (await services.accounts.by_email(email)).id if email else None
    reader = services.payments or Payments(services.settings, services.db)
    rows = [
        {
            "id": p.id,
            "email": owner,
            "status": p.status,
            "amount_usd": micro_to_usd(p.amount_micro),
            "refunded_usd": micro_to_usd(p.refunded_micro),
            "requested_usd": micro_to_usd(p.requested_micro),
            "method": p.method,
            "stripe_session_id": p.stripe_session_id,
            "stripe_payment_intent": p.stripe_payment_intent,
            "created": p.created_at.isoformat(),
            "paid": p.paid_at.isoformat() if p.paid_at else None,
        }
        for p, owner in await reader.list(account_id=account_id, limit=limit,
                                          include_open=include_open)
    ]
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        refunded = f"  refunded {r['refunded_usd']}" if r["refunded_usd"] != "0.000000" else ""
        when = str(r["paid"] or r["created"])[:19]
        click.echo(f"{r['id']:>6}  {when}  {r['email']:32} "
                   f"{r['amount_usd']:>14} USD  {r['status']:10} {r['stripe_session_id']}{refunded}")
