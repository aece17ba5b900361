"""Pages of a signed-in account: dashboard, API keys, usage, billing, models, setup guide."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from a2agent.auth.accounts import NotFound
from a2agent.billing import spend
from a2agent.console import queries
from a2agent.console.core import Console, form_text, page_number, parse_id, path_int
from a2agent.console.periods import CHOICES, period_from
from a2agent.console.session import Viewer
from a2agent.store.models import DailyUsage


def chart_json(days: list[dict[str, Any]], series: list[tuple[str, str, float]], kind: str = "usd"
               ) -> str:
    """uPlot data for a daily chart: x = unix seconds; each series = metric × scale."""
    xs = [int(dt.datetime.combine(d["day"], dt.time(), dt.UTC).timestamp()) for d in days]
    return orjson.dumps({
        "kind": kind,
        "x": xs,
        "series": [{"label": label, "values": [round(d[metric] * scale, 6) for d in days]}
                   for label, metric, scale in series],
    }).decode()


USD = 1 / 1_000_000


# ---- dashboard ---------------------------------------------------------------------------------
async def dashboard(c: Console, request: Request, viewer: Viewer) -> Response:
    db = c.services.db
    end = queries.today()
    start = end - dt.timedelta(days=29)
    days = await queries.daily(db, account_id=viewer.account_id, start=start, end=end)
    month_start = end.replace(day=1)
    month = await queries.total(db, account_id=viewer.account_id, start=month_start, end=end)
    keys = await c.services.accounts.list_keys(viewer.account_id)
    account = await c.services.accounts.get(viewer.account_id)
    return c.page(request, "dashboard.html", viewer, today=days[-1], month=month,
                  insight=spend.insight(month["cost_micro"], end, account.spend_limit_micro),
                  last30=_sum_days(days), key_count=len(keys),
                  chart=chart_json(days, [("Spend", "cost_micro", USD)]))


def _sum_days(days: list[dict[str, Any]]) -> dict[str, int]:
    out = queries.empty()
    for d in days:
        for k in out:
            out[k] += d[k]
    return out


# ---- API keys ----------------------------------------------------------------------------------
async def _keys_context(c: Console, viewer: Viewer) -> dict[str, Any]:
    keys = await c.services.accounts.list_keys(viewer.account_id)
    totals = await queries.key_totals(c.services.db, viewer.account_id)
    return {"keys": keys, "totals": totals, "zero": queries.empty()}


async def keys_page(c: Console, request: Request, viewer: Viewer) -> Response:
    return c.page(request, "keys.html", viewer, **await _keys_context(c, viewer))


async def create_key(c: Console, request: Request, viewer: Viewer) -> Response:
    form = await request.form()
    label = form_text(form, "label", 120)
    key, value = await c.services.accounts.create_key(viewer.account_id, label or None)
    ctx = await _keys_context(c, viewer)
    template = "keys_created.html" if request.headers.get("hx-request") else "keys.html"
    return c.page(request, template, viewer, created=key, created_value=value, **ctx)


async def delete_key(c: Console, request: Request, viewer: Viewer) -> Response:
    key_id = path_int(request, "key_id")
    try:
        if key_id is None:
            raise NotFound("bad id")
        await c.services.accounts.delete_key(key_id, account_id=viewer.account_id)
    except NotFound:
        return c.not_found(request, viewer)
    return c.redirect(request, "/keys", "Key deleted. It stopped working immediately.")


# ---- usage -------------------------------------------------------------------------------------
async def usage_page(c: Console, request: Request, viewer: Viewer) -> Response:
    db = c.services.db
    period = period_from(request)
    key_id = None
    raw_key = request.query_params.get("key", "")
    if raw_key:
        key_id = parse_id(raw_key)
        if key_id is None or not await queries.owned_key(db, viewer.account_id, key_id):
            return c.not_found(request, viewer)
    scope: dict[str, Any] = dict(account_id=viewer.account_id, start=period.start, end=period.end,
                                 key_id=key_id)
    days = await queries.daily(db, **scope)
    by_key = await queries.grouped(db, DailyUsage.key_id, **scope)
    by_model = await queries.grouped(db, DailyUsage.model, **scope)
    page = await queries.recent_requests(db, **scope, page=page_number(request))
    names = await queries.key_names(db, viewer.account_id)
    totals = _sum_days(days)
    return c.page(
        request, "usage.html", viewer, period=period, choices=CHOICES, key_id=key_id, names=names,
        days=days, totals=totals,
        by_key=sorted(by_key, key=lambda kv: -kv[1]["cost_micro"]),
        by_model=sorted(by_model, key=lambda kv: -kv[1]["cost_micro"]),
        requests=page, pages=max(math.ceil(totals["requests"] / page.per_page), 1),
        cost_chart=chart_json(days, [("Spend", "cost_micro", USD)]),
        token_chart=chart_json(days, [("Input", "input_tokens", 1), ("Output", "output_tokens", 1),
                                      ("Cache read", "cache_read_tokens", 1),
                                      ("Cache write", "cache_write_tokens", 1)], kind="tokens"),
    )


# ---- models and setup guide ---------------------------------------------------------------------
async def models_page(c: Console, request: Request, viewer: Viewer) -> Response:
    models = [m for m in await c.services.catalog.list_models() if m.protocols]
    return c.page(request, "models.html", viewer, models=models)


async def docs_page(c: Console, request: Request, viewer: Viewer | None) -> Response:
    """Public: the guide holds no secrets, and people read it before signing up."""
    models = [m for m in await c.services.catalog.list_models() if m.protocols]
    example = models[0].model_id if models else "MODEL_ID"
    claude = next((m.model_id for m in models if "claude" in m.model_id), example)
    return c.page(request, "docs.html", viewer, model=example, claude_model=claude,
                  models=models)


async def setup_redirect(c: Console, request: Request, viewer: Viewer | None) -> Response:
    return c.redirect(request, "/docs")


def routes(c: Console) -> list[Route]:
    return [
        Route("/", c.user(dashboard), methods=["GET"]),
        Route("/keys", c.user(keys_page), methods=["GET"]),
        Route("/keys", c.user(create_key), methods=["POST"]),
        Route("/keys/{key_id}/delete", c.user(delete_key), methods=["POST"]),
        Route("/usage", c.user(usage_page), methods=["GET"]),
        Route("/models", c.user(models_page), methods=["GET"]),
        Route("/docs", c.public(docs_page), methods=["GET"]),
        Route("/setup", c.public(setup_redirect), methods=["GET"]),
    ]
