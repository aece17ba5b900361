"""Admin pages for the catalogue: channels (add, edit, enable/disable, test, delete) and models
with their routes and prices. Every change goes through routing.catalog, which bumps the
catalogue version so it holds on the next request on every worker and instance."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from a2agent.auth.accounts import Conflict, NotFound
from a2agent.billing.money import MoneyError, Prices, usd_to_micro
from a2agent.console.core import Console, form_int, form_text, path_int
from a2agent.console.session import Viewer
from a2agent.routing.probe import probe_channel

TIMEOUTS = ("connect_timeout", "first_byte_timeout", "idle_timeout", "total_timeout")


async def _channel(c: Console, request: Request) -> Any:
    channel_id = path_int(request, "channel_id")
    for ch in await c.services.catalog.list_channels():
        if ch.id == channel_id:
            return ch
    return None


async def channels_page(c: Console, request: Request, viewer: Viewer, **extra: Any) -> Response:
    catalog = c.services.catalog
    channels = await catalog.list_channels()
    snapshot = await catalog.snapshot(await catalog.current_version())
    health: dict[str, dict[str, Any]] = {}
    routes: dict[str, int] = {}
    for entry in snapshot.models.values():
        for r in entry.routes:
            routes[r.channel.name] = routes.get(r.channel.name, 0) + 1
    for name, info in snapshot.channels.items():
        st = c.gw.health.state(info)
        health[name] = {"state": c.gw.health.describe(info), "error_rate": st.error_rate(),
                        "latency_ms": st.latency_ms(), "in_flight": st.in_flight}
    return c.page(request, "admin/channels.html", viewer, channels=channels, health=health,
                  routes=routes, **extra)


def _headers(text: str) -> dict[str, str] | None:
    if not text:
        return None
    value = orjson.loads(text)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("extra headers must be a JSON object of strings")
    return value


def _timeouts(form: Any) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name in TIMEOUTS:
        text = form_text(form, name, 20)
        value = float(text) if text else None
        if value is not None and value <= 0:
            raise ValueError(f"{name.replace('_', ' ')} must be a positive number of seconds")
        out[name] = value
    return out


async def add_channel(c: Console, request: Request, viewer: Viewer) -> Response:
    form = await request.form()
    name = form_text(form, "name", 64)
    try:
        await c.services.catalog.add_channel(
            name, protocol=form_text(form, "protocol", 16), base_url=form_text(form, "base_url", 500),
            api_key=form_text(form, "api_key", 4000) or None,
            priority=form_int(form, "priority") or 0, weight=form_int(form, "weight", minimum=1) or 1,
            extra_headers=_headers(form_text(form, "extra_headers", 4000)),
            supports_reasoning=form_text(form, "supports_reasoning", 5) == "1",
            max_concurrency=form_int(form, "max_concurrency", minimum=1),
            timeouts=_timeouts(form),
        )
    except (ValueError, Conflict) as exc:
        return await channels_page(c, request, viewer, status=400, error=_message(exc),
                                   form=dict(form), open_add=True)
    return c.redirect(request, "/admin/channels", f"Channel {name} added.")


def _message(exc: Exception) -> str:
    text = str(exc)
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


async def channel_page(c: Console, request: Request, viewer: Viewer, **extra: Any) -> Response:
    ch = await _channel(c, request)
    if ch is None:
        return c.not_found(request, viewer)
    headers = orjson.loads(ch.extra_headers) if ch.extra_headers else None
    return c.page(request, "admin/channel.html", viewer, ch=ch,
                  headers_json=orjson.dumps(headers).decode() if headers else "", **extra)


async def edit_channel(c: Console, request: Request, viewer: Viewer) -> Response:
    ch = await _channel(c, request)
    if ch is None:
        return c.not_found(request, viewer)
    form = await request.form()
    try:
        values: dict[str, Any] = {
            "base_url": form_text(form, "base_url", 500),
            "priority": form_int(form, "priority") or 0,
            "weight": form_int(form, "weight", minimum=1) or 1,
            "extra_headers": orjson.dumps(_headers(form_text(form, "extra_headers", 4000))).decode()
            if form_text(form, "extra_headers", 4000) else None,
            "supports_reasoning": form_text(form, "supports_reasoning", 5) == "1",
            "max_concurrency": form_int(form, "max_concurrency", minimum=1),
            **_timeouts(form),
        }
        new_key = form_text(form, "api_key", 4000)
        if new_key:
            values["api_key"] = new_key
        elif form_text(form, "clear_api_key", 5) == "1":
            values["api_key"] = None
        await c.services.catalog.update_channel(ch.name, **values)
    except (ValueError, NotFound) as exc:
        return await channel_page(c, request, viewer, status=400, error=_message(exc))
    return c.redirect(request, f"/admin/channels/{ch.id}", "Channel saved.")


async def toggle_channel(c: Console, request: Request, viewer: Viewer) -> Response:
    ch = await _channel(c, request)
    if ch is None:
        return c.not_found(request, viewer)
    await c.services.catalog.update_channel(ch.name, enabled=not ch.enabled)
    state = "disabled: no traffic is routed to it" if ch.enabled else "enabled"
    return c.redirect(request, "/admin/channels", f"Channel {ch.name} {state}.")


async def test_channel(c: Console, request: Request, viewer: Viewer) -> Response:
    ch = await _channel(c, request)
    if ch is None:
        return c.not_found(request, viewer)
    result = await probe_channel(c.gw, ch.name)
    if request.headers.get("hx-request"):
        return c.page(request, "admin/probe_result.html", viewer, result=result, ch=ch)
    kind = "ok" if result["ok"] else "error"
    text = ("Connection OK" if result["ok"] else "Connection failed") + \
        f" ({result['latency_ms']} ms): {result['message']}"
    return c.redirect(request, "/admin/channels", f"{ch.name}: {text}", kind)


async def delete_channel(c: Console, request: Request, viewer: Viewer) -> Response:
    ch = await _channel(c, request)
    if ch is None:
        return c.not_found(request, viewer)
    await c.services.catalog.remove_channel(ch.name)
    return c.redirect(request, "/admin/channels", f"Channel {ch.name} and its routes deleted.")


# ---- models ------------------------------------------------------------------------------------
async def models_page(c: Console, request: Request, viewer: Viewer, **extra: Any) -> Response:
    models = await c.services.catalog.list_models()
    channels = await c.services.catalog.list_channels()
    return c.page(request, "admin/models.html", viewer, models=models, channels=channels, **extra)


def _prices(form: Any) -> Prices:
    values = []
    for name in ("input", "output", "cache_read", "cache_write"):
        text = form_text(form, name, 40)
        try:
            values.append(usd_to_micro(text or "0"))
        except MoneyError:
            raise ValueError(f"{name.replace('_', ' ')} price must be a USD amount per 1M tokens, "
                             f"such as 0.15") from None
    return Prices(*values)


async def add_model(c: Console, request: Request, viewer: Viewer) -> Response:
    form = await request.form()
    model_id = form_text(form, "model_id", 200)
    try:
        await c.services.catalog.add_model(
            model_id, channel=form_text(form, "channel", 64), prices=_prices(form),
            upstream_model=form_text(form, "upstream_model", 200) or None,
            context_window=form_int(form, "context_window", minimum=1),
            max_output_tokens=form_int(form, "max_output_tokens", minimum=1),
        )
    except (ValueError, NotFound) as exc:
        return await models_page(c, request, viewer, status=400, error=_message(exc),
                                 form=dict(form), open_add=True)
    return c.redirect(request, "/admin/models", f"Model {model_id} saved.")


async def set_prices(c: Console, request: Request, viewer: Viewer) -> Response:
    form = await request.form()
    model_id = form_text(form, "model_id", 200)
    try:
        await c.services.catalog.set_prices(model_id, _prices(form))
    except (ValueError, NotFound) as exc:
        return await models_page(c, request, viewer, status=400, error=_message(exc))
    return c.redirect(request, "/admin/models", f"Prices of {model_id} saved.")


async def remove_route(c: Console, request: Request, viewer: Viewer) -> Response:
    form = await request.form()
    model_id, channel = form_text(form, "model_id", 200), form_text(form, "channel", 64)
    try:
        await c.services.catalog.remove_route(model_id, channel)
    except NotFound:
        return c.not_found(request, viewer)
    return c.redirect(request, "/admin/models", f"Route {model_id} → {channel} removed.")


async def remove_model(c: Console, request: Request, viewer: Viewer) -> Response:
    form = await request.form()
    model_id = form_text(form, "model_id", 200)
    try:
        await c.services.catalog.remove_model(model_id)
    except NotFound:
        return c.not_found(request, viewer)
    return c.redirect(request, "/admin/models", f"Model {model_id} deleted.")


def routes(c: Console) -> list[Route]:
    a = c.admin
    return [
        Route("/admin/channels", a(channels_page), methods=["GET"]),
        Route("/admin/channels", a(add_channel), methods=["POST"]),
        Route("/admin/channels/{channel_id}", a(channel_page), methods=["GET"]),
        Route("/admin/channels/{channel_id}", a(edit_channel), methods=["POST"]),
        Route("/admin/channels/{channel_id}/toggle", a(toggle_channel), methods=["POST"]),
        Route("/admin/channels/{channel_id}/test", a(test_channel), methods=["POST"]),
        Route("/admin/channels/{channel_id}/delete", a(delete_channel), methods=["POST"]),
        Route("/admin/models", a(models_page), methods=["GET"]),
        Route("/admin/models", a(add_model), methods=["POST"]),
        Route("/admin/models/prices", a(set_prices), methods=["POST"]),
        Route("/admin/models/remove-route", a(remove_route), methods=["POST"]),
        Route("/admin/models/delete", a(remove_model), methods=["POST"]),
    ]
