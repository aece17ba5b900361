"""Admin pages: users (search, suspend, balance, limits, keys, usage), redemption codes,
usage across accounts, and gateway settings (sign-up on/off)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from a2agent.auth.accounts import NotFound
from a2agent.billing.money import MoneyError, usd_to_micro
from a2agent.console import queries
from a2agent.console.core import Console, form_int, form_text, page_number, path_int
from a2agent.console.periods import CHOICES, period_from
from a2agent.console.render import usd
from a2agent.console.session import Viewer
from a2agent.console.user_views import USD, _sum_days, chart_json
from a2agent.store.models import DailyUsage

USERS_PER_PAGE = 50


async def admin_home(c: Console, request: Request, viewer: Viewer) -> Response:
    return c.redirect(request, "/admin/users")


async def users_page(c: Console, request: Request, viewer: Viewer) -> Response:
    search = request.query_params.get("q", "").strip()[:200]
    page = page_number(request)
    accounts = await c.services.accounts.list(search or None, limit=USERS_PER_PAGE + 1,
                                              offset=(page - 1) * USERS_PER_PAGE)
    has_next = len(accounts) > USERS_PER_PAGE
    accounts = accounts[:USERS_PER_PAGE]
    since = queries.today() - dt.timedelta(days=29)
    key_counts, usage = await queries.account_extras(c.services.db, [a.id for a in accounts], since)
    return c.page(request, "admin/users.html", viewer, accounts=accounts, search=search, page=page,
                  has_next=has_next, key_counts=key_counts, usage=usage, zero=queries.empty())


async def _account_or_none(c: Console, request: Request) -> Any:
    account_id = path_int(request, "account_id")
    if account_id is None:
        return None
    try:
        return await c.services.accounts.get(account_id)
    except NotFound:
        return None


async def user_page(c: Console, request: Request, viewer: Viewer, **extra: Any) -> Response:
    account = await _account_or_none(c, request)
    if account is None:
        return c.not_found(request, viewer)
    db = c.services.db
    end = queries.today()
    start = end - dt.timedelta(days=29)
    days = await queries.daily(db, account_id=account.id, start=start, end=end)
    all_keys = await c.services.accounts.list_keys(account.id, include_deleted=True)
    return c.page(
        request, "admin/user.html", viewer, account=account,
        keys=[k for k in all_keys if k.deleted_at is None],
        totals=await queries.key_totals(db, account.id), zero=queries.empty(),
        last30=_sum_days(days), chart=chart_json(days, [("Spend", "cost_micro", USD)]),
        by_model=await queries.grouped(db, DailyUsage.model, account_id=account.id, start=start, end=end),
        requests=await queries.recent_requests(db, account_id=account.id, start=start, end=end,
                                               per_page=20),
        names={k.id: {"name": k.name} for k in all_keys},
        entries=await c.services.ledger.entries(account.id, limit=10),
        defaults={"rpm": c.settings.default_rpm, "tpm": c.settings.default_tpm},
        **extra)


async def set_suspended(c: Console, request: Request, viewer: Viewer) -> Response:
    account = await _account_or_none(c, request)
    if account is None:
        return c.not_found(request, viewer)
    form = await request.form()
    suspend = form_text(form, "suspended", 5) == "1"
    if suspend and account.id == viewer.account_id:
        return c.redirect(request, f"/admin/users/{account.id}", "You cannot suspend yourself.", "error")
    await c.services.accounts.set_suspended(account.id, suspend)
    if suspend:
        await c.sessions.revoke_all(account.id)
    what = "suspended: its keys get 403 and its sessions were ended" if suspend else "reactivated"
    return c.redirect(request, f"/admin/users/{account.id}", f"{account.email} {what}.")


async def adjust_balance(c: Console, request: Request, viewer: Viewer) -> Response:
    account = await _account_or_none(c, request)
    if account is None:
        return c.not_found(request, viewer)
    form = await request.form()
    note = form_text(form, "note", 500)
    try:
        amount = usd_to_micro(form_text(form, "amount", 40), allow_negative=True)
        if amount == 0:
            raise MoneyError("zero")
    except MoneyError:
        return await user_page(c, request, viewer, status=400,
                               balance_error="Enter a non-zero USD amount such as 10 or -2.50 "
                                             "(at most 6 decimals).")
    if not note:
        return await user_page(c, request, viewer, status=400,
                               balance_error="Add a note saying why (it is kept in the ledger).")
    after = await c.services.ledger.adjust(account.id, amount, f"{note} (by {viewer.email})")
    return c.redirect(request, f"/admin/users/{account.id}",
                      f"Balance adjusted by {usd(amount)}; it is now {usd(after)}.")


async def set_limits(c: Console, request: Request, viewer: Viewer) -> Response:
    account = await _account_or_none(c, request)
    if account is None:
        return c.not_found(request, viewer)
    form = await request.form()
    try:
        rpm = form_int(form, "rpm", minimum=0)
        tpm = form_int(form, "tpm", minimum=0)
    except ValueError:
        return await user_page(c, request, viewer, status=400,
                               limits_error="Limits are whole numbers ≥ 0 (0 = unlimited; blank = "
                                            "the gateway default).")
    await c.services.accounts.set_limits(account.id, rpm=rpm, tpm=tpm)
    await queries.clear_limits(c.services.db, account.id, rpm=rpm is None, tpm=tpm is None)
    return c.redirect(request, f"/admin/users/{account.id}", "Rate limits saved.")


async def delete_user_key(c: Console, request: Request, viewer: Viewer) -> Response:
    account = await _account_or_none(c, request)
    key_id = path_int(request, "key_id")
    if account is None or key_id is None:
        return c.not_found(request, viewer)
    try:
        await c.services.accounts.delete_key(key_id, account_id=account.id)
    except NotFound:
        return c.not_found(request, viewer)
    return c.redirect(request, f"/admin/users/{account.id}", "Key deleted.")


# ---- redemption codes ---------------------------------------------------------------------------
async def codes_page(c: Console, request: Request, viewer: Viewer, **extra: Any) -> Response:
    codes = await c.services.ledger.list_codes(limit=200)
    who = await queries.emails(c.services.db, {x.redeemed_by for x in codes if x.redeemed_by})
    return c.page(request, "admin/codes.html", viewer, codes=codes, who=who, **extra)


async def create_codes(c: Console, request: Request, viewer: Viewer) -> Response:
    form = await request.form()
    try:
        amount = usd_to_micro(form_text(form, "amount", 40))
        count = form_int(form, "count", minimum=1) or 1
        if amount <= 0 or count > 1000:
            raise ValueError
    except (MoneyError, ValueError):
        return await codes_page(c, request, viewer, status=400,
                                error="Enter a positive USD amount and a count from 1 to 1000.")
    created = await c.services.ledger.create_codes(amount, count)
    return await codes_page(c, request, viewer, created=created, created_amount=amount)


# ---- usage across accounts -----------------------------------------------------------------------
async def usage_page(c: Console, request: Request, viewer: Viewer) -> Response:
    db = c.services.db
    period = period_from(request)
    scope: dict[str, Any] = dict(account_id=None, start=period.start, end=period.end)
    days = await queries.daily(db, **scope)
    by_account = sorted(await queries.grouped(db, DailyUsage.account_id, **scope),
                        key=lambda kv: -kv[1]["cost_micro"])[:100]
    by_model = sorted(await queries.grouped(db, DailyUsage.model, **scope),
                      key=lambda kv: -kv[1]["cost_micro"])
    # No global "recent requests" list here: request_records has no index on time alone, so
    # it would scan every record; each user's page lists theirs through (account, time).
    return c.page(request, "admin/usage.html", viewer, period=period, choices=CHOICES,
                  totals=_sum_days(days), by_account=by_account, by_model=by_model,
                  emails=await queries.emails(db, {a for a, _ in by_account}),
                  chart=chart_json(days, [("Spend", "cost_micro", USD)]))


# ---- settings --------------------------------------------------------------------------------------
async def settings_page(c: Console, request: Request, viewer: Viewer) -> Response:
    enabled = await queries.signup_enabled(c.services.db, c.settings.signup_enabled)
    return c.page(request, "admin/settings.html", viewer, signup_enabled=enabled)


async def save_settings(c: Console, request: Request, viewer: Viewer) -> Response:
    form = await request.form()
    enabled = form_text(form, "signup_enabled", 5) == "1"
    await queries.set_signup_enabled(c.services.db, enabled)
    return c.redirect(request, "/admin/settings",
                      "Sign-up is now " + ("open to everyone." if enabled else "turned off."))


def routes(c: Console) -> list[Route]:
    a = c.admin
    return [
        Route("/admin", a(admin_home), methods=["GET"]),
        Route("/admin/users", a(users_page), methods=["GET"]),
        Route("/admin/users/{account_id}", a(user_page), methods=["GET"]),
        Route("/admin/users/{account_id}/suspend", a(set_suspended), methods=["POST"]),
        Route("/admin/users/{account_id}/balance", a(adjust_balance), methods=["POST"]),
        Route("/admin/users/{account_id}/limits", a(set_limits), methods=["POST"]),
        Route("/admin/users/{account_id}/keys/{key_id}/delete", a(delete_user_key), methods=["POST"]),
        Route("/admin/codes", a(codes_page), methods=["GET"]),
        Route("/admin/codes", a(create_codes), methods=["POST"]),
        Route("/admin/usage", a(usage_page), methods=["GET"]),
        Route("/admin/settings", a(settings_page), methods=["GET"]),
        Route("/admin/settings", a(save_settings), methods=["POST"]),
    ]
