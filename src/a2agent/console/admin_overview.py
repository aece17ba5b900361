"""Admin: the gateway dashboard (requests, errors and latency per channel, spend per day, top
accounts), creating users and resetting passwords in the console."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from sqlalchemy import case, func, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from a2agent.auth.accounts import Conflict, NotFound
from a2agent.auth.passwords import check_password_strength
from a2agent.billing.money import MoneyError, usd_to_micro
from a2agent.console import queries
from a2agent.console.core import Console, form_text, path_int
from a2agent.console.periods import CHOICES, period_from
from a2agent.console.session import Viewer
from a2agent.console.user_views import USD, _sum_days, chart_json
from a2agent.store.models import DailyUsage, RequestRecord

TOP_ACCOUNTS = 10


CHANNEL_WINDOW = dt.timedelta(hours=24)


async def channel_stats(c: Console, lo: dt.datetime, hi: dt.datetime) -> list[dict[str, Any]]:
    """Per channel in [lo, hi): requests, failures, refusals, mean and max latency, read from
    the request records (the daily roll-up has no channel), so over a bounded window.

    Refusals carry no channel (they never reached one): they are one row of their own."""
    r = RequestRecord
    failed = func.sum(case((r.status.not_in(("ok", "refused", "pending")), 1), else_=0))
    refused = func.sum(case((r.status == "refused", 1), else_=0))
    q = (select(r.channel, func.count(), failed, refused, func.avg(r.latency_ms),
                func.max(r.latency_ms), func.avg(r.ttfb_ms))
         .where(r.created_at >= lo, r.created_at < hi).group_by(r.channel))
    async with c.services.db.read_conn() as conn:
        rows = (await conn.execute(q)).all()
    out = [{"channel": row[0], "requests": int(row[1]), "failed": int(row[2] or 0),
            "refused": int(row[3] or 0), "avg_ms": int(row[4] or 0), "max_ms": int(row[5] or 0),
            "ttfb_ms": int(row[6] or 0)} for row in rows]
    return sorted(out, key=lambda s: (s["channel"] is None, -s["requests"]))


async def top_accounts(c: Console, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    q = (select(DailyUsage.account_id, func.sum(DailyUsage.cost_micro), func.sum(DailyUsage.requests))
         .where(DailyUsage.day >= start, DailyUsage.day <= end).group_by(DailyUsage.account_id)
         .order_by(func.sum(DailyUsage.cost_micro).desc()).limit(TOP_ACCOUNTS))
    async with c.services.db.read_conn() as conn:
        rows = (await conn.execute(q)).all()
    emails = await queries.emails(c.services.db, {row[0] for row in rows})
    return [{"id": row[0], "email": emails.get(row[0], f"#{row[0]}"), "cost_micro": int(row[1] or 0),
             "requests": int(row[2] or 0)} for row in rows]


async def overview(c: Console, request: Request, viewer: Viewer) -> Response:
    period = period_from(request, default="7d")
    db = c.services.db
    days = await queries.daily(db, account_id=None, start=period.start, end=period.end)
    now = dt.datetime.now(dt.UTC)
    channels = await channel_stats(c, now - CHANNEL_WINDOW, now + dt.timedelta(minutes=1))
    return c.page(request, "admin/overview.html", viewer, period=period, choices=CHOICES,
                  totals=_sum_days(days), channels=channels,
                  top=await top_accounts(c, period.start, period.end),
                  refused=sum(ch["refused"] for ch in channels),
                  failed=sum(ch["failed"] for ch in channels),
                  chart=chart_json(days, [("Spend", "cost_micro", USD)]))


async def create_user(c: Console, request: Request, viewer: Viewer) -> Response:
    form = await request.form()
    email = form_text(form, "email", 320)
    password = form_text(form, "password", 200)
    generated = not password
    if generated:
        password = secrets.token_urlsafe(12)
    reason = check_password_strength(password)
    try:
        if reason:
            raise ValueError(reason)
        balance = form_text(form, "balance", 40)
        amount = usd_to_micro(balance) if balance else 0
        account = await c.services.accounts.create(email, password,
                                                   admin=form_text(form, "admin", 5) == "1")
    except (ValueError, Conflict, MoneyError) as exc:
        return c.redirect(request, "/admin/users", f"User not created: {exc}", "error")
    if amount:
        await c.services.ledger.adjust(account.id, amount, note="initial balance")
    if generated:  # shown in this response only: never in a cookie, a URL or a log
        return c.page(request, "admin/password_shown.html", viewer, account=account,
                      password=password, title=f"Created {account.email}")
    return c.redirect(request, f"/admin/users/{account.id}", f"Created {account.email}.")


async def reset_password(c: Console, request: Request, viewer: Viewer) -> Response:
    account_id = path_int(request, "account_id")
    try:
        if account_id is None:
            raise NotFound("bad id")
        account = await c.services.accounts.get(account_id)
    except NotFound:
        return c.not_found(request, viewer)
    form = await request.form()
    password = form_text(form, "password", 200) or secrets.token_urlsafe(12)
    reason = check_password_strength(password)
    if reason:
        return c.redirect(request, f"/admin/users/{account.id}", f"Password not changed: {reason}",
                          "error")
    await c.services.accounts.set_password(account.id, password)
    await c.sessions.revoke_all(account.id)
    if not form_text(form, "password", 200):
        return c.page(request, "admin/password_shown.html", viewer, account=account,
                      password=password, title=f"New password for {account.email}")
    return c.redirect(request, f"/admin/users/{account.id}",
                      f"Password of {account.email} reset; their sessions were ended.")


def routes(c: Console) -> list[Route]:
    return [
        Route("/admin/users/new", c.admin(create_user), methods=["POST"]),
        Route("/admin/users/{account_id}/password", c.admin(reset_password), methods=["POST"]),
    ]
