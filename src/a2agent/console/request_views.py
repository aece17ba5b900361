"""Request log pages: a user's own requests (``/requests``), every account's for admins
(``/admin/requests``), one request's metadata (``/requests/{id}``), and CSV export."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from a2agent.console import queries
from a2agent.console import request_log as log
from a2agent.console.core import Console, parse_id
from a2agent.console.periods import CHOICES
from a2agent.console.render import secure
from a2agent.console.session import Viewer


async def _filters(c: Console, request: Request, viewer: Viewer, admin: bool
                   ) -> log.Filters | None:
    """The page's filters; None when they name a key that is not the viewer's (→ 404)."""
    raw_key = request.query_params.get("key", "")
    key_id = parse_id(raw_key) if raw_key else None
    if raw_key and key_id is None:
        return None
    account_id: int | None = viewer.account_id
    if admin:
        raw_account = request.query_params.get("account", "")
        account_id = parse_id(raw_account) if raw_account else None
    elif key_id is not None and not await queries.owned_key(c.services.db, viewer.account_id,
                                                              key_id):
        return None
    return log.filters_from(request, key_id, account_id)


async def _list(c: Console, request: Request, viewer: Viewer, admin: bool) -> Response:
    db = c.services.db
    base = "/admin/requests" if admin else "/requests"
    search = request.query_params.get("q", "").strip()
    if search:
        found = await log.find(db, search, None if admin else viewer.account_id)
        if found is not None:
            return c.redirect(request, f"/requests/{found.id}")
    f = await _filters(c, request, viewer, admin)
    if f is None:
        return c.not_found(request, viewer)
    before = log.decode_cursor(request.query_params.get("before"))
    rows, older = await log.page(db, f, before)
    if admin:
        names = await queries.key_names(db, None, {r.key_id for r in rows})
        emails = await queries.emails(db, {r.account_id for r in rows})
        key_choices: dict[int, dict[str, Any]] = {}
    else:
        names = await queries.key_names(db, viewer.account_id)
        emails = None
        key_choices = names
    models = sorted({m.model_id for m in await c.services.catalog.list_models()})
    return c.page(request, "requests.html", viewer, filters=f, rows=rows, older=older,
                  first=before is None, names=names, emails=emails, key_choices=key_choices,
                  models=models, choices=CHOICES, statuses=log.STATUS_CLASSES,
                  protocols=log.PROTOCOLS, base=base, admin=admin, search=search,
                  not_found=bool(search))


async def requests_page(c: Console, request: Request, viewer: Viewer) -> Response:
    return await _list(c, request, viewer, admin=False)


async def admin_requests_page(c: Console, request: Request, viewer: Viewer) -> Response:
    return await _list(c, request, viewer, admin=True)


async def request_detail(c: Console, request: Request, viewer: Viewer) -> Response:
    rid = str(request.path_params.get("request_id", ""))
    record = await log.find(c.services.db, rid, None if viewer.is_admin else viewer.account_id)
    if record is None:
        return c.not_found(request, viewer)
    names = await queries.key_names(c.services.db, None, {record.key_id})
    emails = await queries.emails(c.services.db, {record.account_id}) if viewer.is_admin else {}
    return c.page(request, "request_detail.html", viewer, r=record, key=names.get(record.key_id),
                  email=emails.get(record.account_id), attempts=log.attempts_of(record))


async def _csv(c: Console, request: Request, viewer: Viewer, admin: bool) -> Response:
    f = await _filters(c, request, viewer, admin)
    if f is None:
        return c.not_found(request, viewer)
    names = await queries.key_names(c.services.db, None if admin else viewer.account_id)
    name = f"a2agent-requests-{f.period.start.isoformat()}-{f.period.end.isoformat()}.csv"
    response = StreamingResponse(log.csv_rows(c.services.db, f, names), media_type="text/csv",
                                 headers={"content-disposition": f'attachment; filename="{name}"'})
    return secure(response)


async def requests_csv(c: Console, request: Request, viewer: Viewer) -> Response:
    return await _csv(c, request, viewer, admin=False)


async def admin_requests_csv(c: Console, request: Request, viewer: Viewer) -> Response:
    return await _csv(c, request, viewer, admin=True)


def routes(c: Console) -> list[Route]:
    return [
        Route("/requests", c.user(requests_page), methods=["GET"]),
        Route("/requests.csv", c.user(requests_csv), methods=["GET"]),
        Route("/requests/{request_id}", c.user(request_detail), methods=["GET"]),
        Route("/admin/requests", c.admin(admin_requests_page), methods=["GET"]),
        Route("/admin/requests.csv", c.admin(admin_requests_csv), methods=["GET"]),
    ]
