"""Key controls in the console: rename, disable / enable, spend cap, model allow-list, expiry.

Every change is scoped to the signed-in account and read by the data plane on the next request
(auth/controls.py), on every worker and instance.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from a2agent.auth.accounts import NotFound
from a2agent.auth.controls import PERIODS, parse_expiry
from a2agent.billing.money import MoneyError, usd_to_micro
from a2agent.console import i18n
from a2agent.console.core import Console, form_text, path_int
from a2agent.console.session import Viewer


def _(request: Request, viewer: Viewer) -> Any:
    return i18n.for_request(request, viewer.locale)


def changes_from_form(form: Any, known_models: set[str]) -> dict[str, Any]:
    """The edit dialog's fields as ``Accounts.update_key`` changes; ValueError when bad."""
    changes: dict[str, Any] = {"name": form_text(form, "name", 120)}
    cap = form_text(form, "cap", 40).lstrip("$").replace(",", "")
    try:
        changes["spend_cap_micro"] = usd_to_micro(cap) if cap else None
    except MoneyError as exc:
        raise ValueError(f"Spend cap: {exc}") from None
    period = form_text(form, "cap_period", 16) or "total"
    if period not in PERIODS:
        raise ValueError("Spend cap period: choose in total or per month.")
    if cap:
        changes["spend_cap_period"] = period
    models = [m for m in form.getlist("models") if isinstance(m, str)]
    unknown = sorted(set(models) - known_models)
    if unknown:
        raise ValueError(f"Unknown model(s): {', '.join(unknown)}.")
    changes["allowed_models"] = models or None
    expires = form_text(form, "expires", 40)
    changes["expires_at"] = parse_expiry(expires) if expires else None
    return changes


async def update_key(c: Console, request: Request, viewer: Viewer) -> Response:
    key_id = path_int(request, "key_id")
    if key_id is None:
        return c.not_found(request, viewer)
    form = await request.form()
    known = {m.model_id for m in await c.services.catalog.list_models()}
    try:
        changes = changes_from_form(form, known)
        key = await c.services.accounts.update_key(key_id, account_id=viewer.account_id,
                                                   **changes)
    except NotFound:
        return c.not_found(request, viewer)
    except ValueError as exc:
        return c.redirect(request, "/keys", _(request, viewer)("Key not changed: %(reason)s")
                          % {"reason": exc}, kind="error")
    return c.redirect(request, "/keys", _(request, viewer)(
        "Key “%(name)s” saved. It applies from the next request.") % {"name": key.name})


async def _set_disabled(c: Console, request: Request, viewer: Viewer, disabled: bool) -> Response:
    key_id = path_int(request, "key_id")
    try:
        if key_id is None:
            raise NotFound("bad id")
        key = await c.services.accounts.update_key(key_id, account_id=viewer.account_id,
                                                   disabled=disabled)
    except NotFound:
        return c.not_found(request, viewer)
    t = _(request, viewer)
    if disabled:
        return c.redirect(request, "/keys", t("Key “%(name)s” disabled: its requests now get "
                                              "403 key_disabled until you enable it.")
                          % {"name": key.name})
    return c.redirect(request, "/keys", t("Key “%(name)s” enabled.") % {"name": key.name})


async def disable_key(c: Console, request: Request, viewer: Viewer) -> Response:
    return await _set_disabled(c, request, viewer, True)


async def enable_key(c: Console, request: Request, viewer: Viewer) -> Response:
    return await _set_disabled(c, request, viewer, False)


def routes(c: Console) -> list[Route]:
    return [
        Route("/keys/{key_id}/update", c.user(update_key), methods=["POST"]),
        Route("/keys/{key_id}/disable", c.user(disable_key), methods=["POST"]),
        Route("/keys/{key_id}/enable", c.user(enable_key), methods=["POST"]),
    ]
