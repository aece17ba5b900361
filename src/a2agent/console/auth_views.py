"""Sign in, sign up, sign out, change password.

Messages never say whether an email has an account: a wrong email and a wrong password get
the same answer, and take the same time (the password is hashed either way).
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from a2agent.auth.accounts import Conflict, NotFound, normalize_email
from a2agent.auth.passwords import check_password_strength, verify_password
from a2agent.billing.money import MICRO
from a2agent.console import queries
from a2agent.console.core import Console, form_text, same_site_path
from a2agent.console.render import usd
from a2agent.console.session import Viewer, client_ip, wait_message

BAD_LOGIN = "Email or password is incorrect."


def signup_credit(c: Console) -> int:
    """The operator's sign-up credit in micro-USD (0 = none)."""
    return round(c.settings.signup_credit_usd * MICRO)


def safe_next(value: str | None) -> str:
    """Only same-site paths: '/x' but not '//host', '/\\host' or anything a browser would
    turn into one (control characters and whitespace are stripped by browsers)."""
    return same_site_path(value)


async def login_page(c: Console, request: Request, viewer: Viewer | None) -> Response:
    if viewer is not None:
        return c.redirect(request, safe_next(request.query_params.get("next")))
    return c.page(request, "login.html", next=safe_next(request.query_params.get("next")),
                  signup_enabled=await queries.signup_enabled(c.services.db, c.settings.signup_enabled))


async def login(c: Console, request: Request, viewer: Viewer | None) -> Response:
    form = await request.form()
    email = form_text(form, "email", 320).lower()
    password = form.get("password")
    password = password if isinstance(password, str) else ""
    nxt = safe_next(form_text(form, "next", 2000))
    signup = await queries.signup_enabled(c.services.db, c.settings.signup_enabled)

    def again(message: str, status: int) -> Response:
        return c.page(request, "login.html", status=status, error=message, email=email, next=nxt,
                      signup_enabled=signup)

    ip = client_ip(request)
    # failures count per (email, client address): guessing from one place cannot lock the
    # account's owner out from another; each address is also limited across all emails
    pair = f"{email}|{ip}"
    wait = max(await c.throttle.blocked("login-ip", ip), await c.throttle.blocked("login-email", pair))
    if wait:
        return again(wait_message(wait), 429)
    try:
        account = await c.services.accounts.by_email(email)
        stored = account.password_hash
    except NotFound:
        account, stored = None, None
    ok = await asyncio.to_thread(verify_password, stored, password)
    if account is None or not ok:
        await c.throttle.hit("login-ip", ip)
        await c.throttle.hit("login-email", pair)
        # a progressive delay on repeated failures slows guessing before the limit is reached
        await asyncio.sleep(await c.throttle.failure_delay("login-email", pair))
        return again(BAD_LOGIN, 400)
    if account.suspended:
        return again("This account is suspended. Contact the administrator of this gateway.", 403)
    await c.throttle.clear("login-email", pair)
    response = c.redirect(request, nxt)
    await c.sessions.start(request, response, account.id)
    return response


async def signup_page(c: Console, request: Request, viewer: Viewer | None) -> Response:
    if viewer is not None:
        return c.redirect(request, "/")
    enabled = await queries.signup_enabled(c.services.db, c.settings.signup_enabled)
    return c.page(request, "signup.html", signup_enabled=enabled, status=200 if enabled else 403,
                  signup_credit=signup_credit(c))


async def signup(c: Console, request: Request, viewer: Viewer | None) -> Response:
    if not await queries.signup_enabled(c.services.db, c.settings.signup_enabled):
        return c.page(request, "signup.html", signup_enabled=False, status=403)
    form = await request.form()
    email = form_text(form, "email", 320)
    password = form.get("password")
    password = password if isinstance(password, str) else ""
    confirm = form.get("confirm")

    def again(message: str, status: int = 400) -> Response:
        return c.page(request, "signup.html", status=status, signup_enabled=True, error=message,
                      email=email, signup_credit=signup_credit(c))

    ip = client_ip(request)
    wait = await c.throttle.blocked("signup-ip", ip)
    if wait:
        return again(wait_message(wait), 429)
    try:
        normalize_email(email)
    except ValueError:
        return again("Enter a valid email address.")
    problem = check_password_strength(password)
    if problem:
        return again(problem)
    if confirm != password:
        return again("The two passwords do not match.")
    await c.throttle.hit("signup-ip", ip)
    try:
        account = await c.services.accounts.create(email, password)
    except Conflict:
        # Without email verification this cannot be fully hidden; say as little as possible.
        return again("We could not create an account with these details. If you already have "
                     "one, sign in instead.")
    welcome = "Welcome! Create your first API key to get started."
    credit = signup_credit(c)
    if credit:
        await c.services.ledger.grant(account.id, credit, "sign-up credit")
        welcome = f"Welcome! {usd(credit)} of free credit is on your balance. Create your first " \
                  "API key to get started."
    response = c.redirect(request, "/keys", welcome)
    await c.sessions.start(request, response, account.id)
    return response


async def logout(c: Console, request: Request, viewer: Viewer | None) -> Response:
    response = c.redirect(request, "/login", "You have been signed out.")
    await c.sessions.end(request, response)
    return response


async def account_page(c: Console, request: Request, viewer: Viewer) -> Response:
    account = await c.services.accounts.get(viewer.account_id)
    return c.page(request, "account.html", viewer, account=account)


async def change_password(c: Console, request: Request, viewer: Viewer) -> Response:
    form = await request.form()
    current = form.get("current")
    new = form.get("password")
    confirm = form.get("confirm")
    account = await c.services.accounts.get(viewer.account_id)

    def again(message: str, status: int = 400) -> Response:
        return c.page(request, "account.html", viewer, status=status, account=account, error=message)

    wait = await c.throttle.blocked("password", str(viewer.account_id))
    if wait:
        return again(wait_message(wait), 429)
    if not isinstance(current, str) or not isinstance(new, str):
        return again("Fill in every field.")
    if not await asyncio.to_thread(verify_password, account.password_hash, current):
        await c.throttle.hit("password", str(viewer.account_id))
        return again("Your current password is incorrect.")
    problem = check_password_strength(new)
    if problem:
        return again(problem)
    if new != confirm:
        return again("The two new passwords do not match.")
    await c.services.accounts.set_password(viewer.account_id, new)
    await c.sessions.revoke_all(viewer.account_id, keep=viewer.session_id)
    return c.redirect(request, "/account", "Password changed. Other sessions were signed out.")


def routes(c: Console) -> list[Route]:
    return [
        Route("/login", c.public(login_page), methods=["GET"]),
        Route("/login", c.public(login), methods=["POST"]),
        Route("/signup", c.public(signup_page), methods=["GET"]),
        Route("/signup", c.public(signup), methods=["POST"]),
        Route("/logout", c.public(logout), methods=["POST"]),
        Route("/account", c.user(account_page), methods=["GET"]),
        Route("/account/password", c.user(change_password), methods=["POST"]),
    ]
