"""The Billing page: balance, card top-ups (where Stripe is configured), codes, the monthly
spend limit, the readable ledger, receipts and CSV exports."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from a2agent.billing import spend
from a2agent.billing.ledger import CodeError
from a2agent.billing.money import MoneyError, usd_to_micro
from a2agent.billing.payments import TopUpError
from a2agent.billing.stripe_api import StripeUnavailable
from a2agent.console import ledger_rows, queries
from a2agent.console.core import Console, form_text, page_number, path_int
from a2agent.console.render import CSP, secure, usd
from a2agent.console.session import Viewer, wait_message

LEDGER_PER_PAGE = 25
STRIPE_CHECKOUT_ORIGIN = "https://checkout.stripe.com"


def checkout_csp(c: Console) -> str:
    """The page with the top-up form may submit into a redirect to Stripe's hosted Checkout
    (browsers apply form-action to the redirect target too)."""
    origins = [STRIPE_CHECKOUT_ORIGIN]
    if c.settings.stripe_api_base:  # a stripe-mock / scripted Stripe serves its own Checkout
        origins.append(c.settings.stripe_api_base.rstrip("/"))
    return CSP.replace("form-action 'self'", "form-action 'self' " + " ".join(origins))


async def billing_page(c: Console, request: Request, viewer: Viewer, **extra: Any) -> Response:
    kind = request.query_params.get("kind", "")
    kind = kind if kind in ledger_rows.KINDS else ""
    page = page_number(request)
    db = c.services.db
    rows, has_next = await ledger_rows.rows(db, viewer.account_id, kind=kind or None, page=page,
                                            per_page=LEDGER_PER_PAGE)
    account = await c.services.accounts.get(viewer.account_id)
    today = queries.today()
    mtd = await spend.month_spend(db, viewer.account_id, today)
    payments = c.services.payments
    response = c.page(
        request, "billing.html", viewer, account=account, rows=rows, page=page,
        has_next=has_next, kind=kind,
        count=await c.services.ledger.count_entries(viewer.account_id), kinds=list(ledger_rows.KINDS.items()),
        names=await queries.key_names(db, viewer.account_id),
        insight=spend.insight(mtd, today, account.spend_limit_micro),
        payments_on=payments is not None,
        presets=c.settings.topup_presets, topup_min=c.settings.topup_min_usd,
        topup_max=c.settings.topup_max_usd,
        recent_payments=[p for p, _ in await payments.list(account_id=viewer.account_id,
                                                            limit=5, include_open=False)]
        if payments is not None else [],
        **extra)
    if payments is not None:
        response.headers["content-security-policy"] = checkout_csp(c)
    return response


async def redeem(c: Console, request: Request, viewer: Viewer) -> Response:
    form = await request.form()
    code = form_text(form, "code", 100)
    ident = str(viewer.account_id)
    wait = await c.throttle.blocked("redeem", ident)
    if wait:
        return await billing_page(c, request, viewer, error=wait_message(wait), status=429)
    if not code:
        return await billing_page(c, request, viewer, error="Enter a code.", status=400)
    try:
        amount = await c.services.ledger.redeem(viewer.account_id, code)
    except CodeError:
        await c.throttle.hit("redeem", ident)
        return await billing_page(c, request, viewer, code=code, status=400,
                                  error="This code is invalid or has already been redeemed.")
    return c.redirect(request, "/billing", f"Code redeemed: {usd(amount)} added to your balance.")


# ---- card top-ups -------------------------------------------------------------------------------
async def topup(c: Console, request: Request, viewer: Viewer) -> Response:
    payments = c.services.payments
    if payments is None:
        return c.not_found(request, viewer)
    form = await request.form()
    raw = form_text(form, "custom", 40) or form_text(form, "amount", 40)
    try:
        amount = usd_to_micro(raw.lstrip("$").replace(",", ""))
        url = await payments.start_checkout(viewer.account_id, viewer.email, amount,
                                            c.base_url(request))
    except MoneyError:
        return await billing_page(c, request, viewer, status=400, topup_error=(
            "Enter an amount in US dollars, such as 20 or 12.50."))
    except TopUpError as exc:
        return await billing_page(c, request, viewer, status=400, topup_error=str(exc))
    except StripeUnavailable:
        return await billing_page(c, request, viewer, status=502, topup_error=(
            "Card payments are unavailable right now; nothing was charged. Please try again "
            "in a few minutes."))
    return secure(RedirectResponse(url, status_code=303))


async def topup_done(c: Console, request: Request, viewer: Viewer) -> Response:
    """Where Stripe sends the browser back. It shows the payment's state as the webhook left
    it; nothing here credits anything."""
    payments = c.services.payments
    if payments is None:
        return c.not_found(request, viewer)
    session_id = request.query_params.get("session_id", "")[:255]
    payment = await payments.by_session(viewer.account_id, session_id) if session_id else None
    if payment is None:
        return c.not_found(request, viewer)
    return c.page(request, "billing_topup_done.html", viewer, payment=payment)


async def topup_cancelled(c: Console, request: Request, viewer: Viewer) -> Response:
    if c.services.payments is None:
        return c.not_found(request, viewer)
    return c.page(request, "billing_topup_cancelled.html", viewer)


async def receipt(c: Console, request: Request, viewer: Viewer) -> Response:
    payments = c.services.payments
    payment_id = path_int(request, "payment_id")
    if payments is None or payment_id is None:
        return c.not_found(request, viewer)
    scope = None if viewer.is_admin else viewer.account_id
    found = await payments.receipt(payment_id, scope)
    if found is None:
        return c.not_found(request, viewer)
    return c.page(request, "billing_receipt.html", viewer, receipt=found)


# ---- spend limit ---------------------------------------------------------------------------------
async def set_spend_limit(c: Console, request: Request, viewer: Viewer) -> Response:
    form = await request.form()
    raw = form_text(form, "limit", 40).lstrip("$").replace(",", "")
    try:
        limit = usd_to_micro(raw) if raw else None
        if limit is not None and limit <= 0:
            raise MoneyError("not positive")
    except MoneyError:
        return await billing_page(c, request, viewer, status=400, limit_error=(
            "Enter a positive amount in US dollars, or leave it blank for no limit."))
    await spend.set_limit(c.services.db, viewer.account_id, limit)
    message = (f"Monthly spend limit set to {usd(limit)}." if limit is not None
               else "Monthly spend limit removed.")
    return c.redirect(request, "/billing", message)


# ---- CSV -------------------------------------------------------------------------------------------
def _csv(body: Any, name: str) -> Response:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
    return secure(StreamingResponse(body, media_type="text/csv; charset=utf-8", headers={
        "content-disposition": f'attachment; filename="a2agent-{name}-{stamp}.csv"'}))


async def ledger_csv(c: Console, request: Request, viewer: Viewer) -> Response:
    return _csv(ledger_rows.ledger_csv(c.services.db, viewer.account_id), "ledger")


async def usage_csv(c: Console, request: Request, viewer: Viewer) -> Response:
    names = await queries.key_names(c.services.db, viewer.account_id)
    return _csv(ledger_rows.usage_csv(c.services.db, viewer.account_id, names), "usage")


async def admin_payments(c: Console, request: Request, viewer: Viewer) -> Response:
    payments = c.services.payments
    if payments is None:
        return c.not_found(request, viewer)
    show_all = request.query_params.get("all") == "1"
    return c.page(request, "admin/payments.html", viewer, show_all=show_all,
                  payments=await payments.list(limit=500, include_open=show_all),
                  totals=await payments.totals())


def routes(c: Console) -> list[Route]:
    return [
        Route("/billing", c.user(billing_page), methods=["GET"]),
        Route("/billing/redeem", c.user(redeem), methods=["POST"]),
        Route("/billing/topup", c.user(topup), methods=["POST"]),
        Route("/billing/topup/done", c.user(topup_done), methods=["GET"]),
        Route("/billing/topup/cancelled", c.user(topup_cancelled), methods=["GET"]),
        Route("/billing/payments/{payment_id}", c.user(receipt), methods=["GET"]),
        Route("/billing/spend-limit", c.user(set_spend_limit), methods=["POST"]),
        Route("/billing/ledger.csv", c.user(ledger_csv), methods=["GET"]),
        Route("/billing/usage.csv", c.user(usage_csv), methods=["GET"]),
        Route("/admin/payments", c.admin(admin_payments), methods=["GET"]),
    ]
