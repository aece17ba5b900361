"""Test a channel's connection with one tiny real request (max 1 output token).

Used by the console's "Test connection" button and the CLI. Goes through the same pooled
upstream client, credentials and extra headers as real traffic; not billed to anyone and
not counted in the channel's health statistics.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from a2agent.providers.upstream import UpstreamError

PROBE_TIMEOUT = 20.0


def _probe_model(snapshot: Any, channel_name: str) -> str:
    for entry in sorted(snapshot.models.values(), key=lambda m: m.model_id):
        for route in entry.routes:
            if route.channel.name == channel_name:
                return str(route.upstream_model)
    return "test"


def _request(protocol: str, model: str) -> tuple[str, bytes]:
    message = [{"role": "user", "content": "ping"}]
    if protocol == "anthropic":
        return "/v1/messages", orjson.dumps({"model": model, "max_tokens": 1, "messages": message})
    if protocol == "responses":
        return "/responses", orjson.dumps({"model": model, "max_output_tokens": 16, "input": "ping"})
    return "/chat/completions", orjson.dumps({"model": model, "max_tokens": 1, "messages": message})


def _error_text(raw: bytes) -> str:
    """The upstream's own error message, if its body has one (shortened)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:200]
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        return str(err["message"])[:200]
    if isinstance(err, str):
        return err[:200]
    return ""


async def probe_channel(gw: Any, channel_name: str) -> dict[str, Any]:
    """{"ok", "status", "latency_ms", "message"}; never raises for upstream failures."""
    from dataclasses import replace

    from a2agent.providers.upstream import Timeouts

    catalog = gw.services.catalog
    snapshot = await catalog.snapshot(await catalog.current_version())
    channel = snapshot.channels.get(channel_name)
    if channel is None:
        return {"ok": False, "status": None, "latency_ms": 0, "message": f"no channel named {channel_name}"}
    model = _probe_model(snapshot, channel_name)
    path, body = _request(channel.protocol, model)
    base = Timeouts.for_channel(channel, gw.settings)
    timeouts = replace(base, first_byte=min(base.first_byte, PROBE_TIMEOUT),
                       idle=min(base.idle, PROBE_TIMEOUT), total=min(base.total, PROBE_TIMEOUT))
    started = time.monotonic()
    try:
        resp = await gw.pool.post(channel, path, body, timeouts=timeouts)
    except UpstreamError as exc:
        return {"ok": False, "status": None, "latency_ms": _ms(started), "message": exc.message}
    try:
        raw = await resp.read()
    except UpstreamError as exc:
        resp.close()
        return {"ok": False, "status": resp.status, "latency_ms": _ms(started), "message": exc.message}
    resp.release()
    latency = _ms(started)
    if 200 <= resp.status < 300:
        disabled = "" if channel.enabled else " (the channel is disabled for traffic)"
        return {"ok": True, "status": resp.status, "latency_ms": latency,
                "message": f"{channel.protocol} upstream answered with model {model}{disabled}"}
    detail = _error_text(raw)
    return {"ok": False, "status": resp.status, "latency_ms": latency,
            "message": f"upstream answered HTTP {resp.status}" + (f": {detail}" if detail else "")}


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
