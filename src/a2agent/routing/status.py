"""Channel status across every live instance: circuit state (from the instances' heartbeats)
and recent error rate and latency (from request records, so all instances count)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select

from a2agent.services import Services
from a2agent.store.models import Instance, RequestRecord, utcnow

WINDOW = dt.timedelta(minutes=15)
LIVE = dt.timedelta(seconds=30)


async def channel_status(services: Services) -> dict[str, dict[str, Any]]:
    since = utcnow() - WINDOW
    out: dict[str, dict[str, Any]] = {}
    async with services.db.read_conn() as conn:
        rows = (await conn.execute(
            select(RequestRecord.channel, RequestRecord.status, RequestRecord.ttfb_ms)
            .where(RequestRecord.created_at >= since, RequestRecord.channel.is_not(None))
            .order_by(RequestRecord.created_at.desc()).limit(20_000)
        )).all()
        instances = (await conn.execute(select(Instance.heartbeat_at, Instance.channel_states))).all()
    per: dict[str, list[tuple[str, int | None]]] = {}
    for channel, status, ttfb in rows:
        per.setdefault(channel, []).append((status, ttfb))
    for channel, items in per.items():
        failures = sum(1 for status, _ in items if status in ("upstream_error", "timeout"))
        lat = sorted(t for status, t in items if status == "ok" and t is not None)
        out[channel] = {
            "requests_15m": len(items),
            "error_rate_15m": round(failures / len(items), 4) if items else None,
            "p50_ttfb_ms": lat[len(lat) // 2] if lat else None,
        }
    live = [json.loads(states) for beat, states in instances if states and beat >= utcnow() - LIVE]
    for states in live:
        for channel, st in states.items():
            entry = out.setdefault(channel, {"requests_15m": 0, "error_rate_15m": None, "p50_ttfb_ms": None})
            entry.setdefault("states", []).append(st["state"])
    for entry in out.values():
        states = entry.pop("states", [])
        opened = sum(1 for s in states if s != "closed")
        entry["circuit"] = "closed" if not opened else f"{'open' if opened == len(states) else 'partly open'}"
        entry["instances_reporting"] = len(states)
    return out
