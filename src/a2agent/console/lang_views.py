"""The language switcher: remembered in a cookie, and on the account when signed in."""

from __future__ import annotations

from sqlalchemy import update
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from a2agent.console import i18n
from a2agent.console.core import Console, form_text
from a2agent.console.session import Viewer, is_https
from a2agent.store.models import Account

YEAR = 365 * 86400


def _back(value: str) -> str:
    """Only a path on this site (no scheme, no host, no backslash tricks)."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value[:2000]
    return "/"


async def set_language(c: Console, request: Request, viewer: Viewer | None) -> Response:
    form = await request.form()
    locale = i18n.normalize(form_text(form, "lang", 16)) or i18n.DEFAULT
    if viewer is not None:
        async with c.services.db.write() as s:
            await s.execute(update(Account).where(Account.id == viewer.account_id)
                            .values(locale=locale))
    response = c.redirect(request, _back(form_text(form, "back", 2000)))
    response.set_cookie(i18n.COOKIE, locale, max_age=YEAR, path="/", samesite="lax",
                        httponly=True, secure=is_https(request, c.settings))
    return response


def routes(c: Console) -> list[Route]:
    return [Route("/lang", c.public(set_language), methods=["POST"])]
