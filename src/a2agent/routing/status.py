"""Channel status across every live instance: circuit state (from the instances' heartbeats)
and recent error rate and latency (from the attempts in request records, so all instances
count, and a failure that was failed over still counts against its channel)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from sqlalchemy import select

from a2agent.services import Services
from a2agent.store.models import Instance, RequestRecord, utcnow

WINDOW = dt.timedelta(minutes=15)
LIVE = dt.timedelta(seconds=30)


def _upstream_failure(outcome: str | None) -> bool | None:
    """Did this attempt fail because of the upstream? None: the attempt says nothing about it."""
    if outcome in (None, "busy", "unsupported"):
        return None
    if outcome == "ok":
        return False
    if outcome.startswith("http_"):
        code = outcome[5:]
        return code == "429" or code.startswith("5")  # other 4xx: the request, not the channel
    return True  # connect, reset, timeouts, malformed answers


async def channel_status(services: Services) -> dict[str, dict[str, Any]]:
    since = utcnow() - WINDOW
    out: dict[str, dict[str, Any]] = {}
    async with services.db.read_conn() as conn:
        rows = (await conn.execute(
            select(RequestRecord.status, RequestRecord.attempts)
            .where(RequestRecord.created_at >= since, RequestRecord.attempts.is_not(None))
            .order_by(RequestRecord.created_at.desc()).limit(20_000)
        )).all()
        instances = (await conn.execute(select(Instance.heartbeat_at, Instance.channel_states))).all()
    per: dict[str, list[tuple[bool, int | None]]] = {}
    for status, raw in rows:
        tries = json.loads(raw) if raw else []
        for n, attempt in enumerate(tries):
            outcome = attempt.get("outcome")
            failed = _upstream_failure(outcome)
            if failed is None:
                continue  # not the channel's doing (our own busy refusal, a request it cannot carry)
            if outcome == "ok" and n == len(tries) - 1 and status in ("upstream_error", "timeout"):
                failed = True  # it answered, then failed mid-stream
            per.setdefault(attempt["channel"], []).append((failed, attempt.get("latency_ms")))
    for channel, items in per.items():
        lat = sorted(ms for failed, ms in items if not failed and ms is not None)
        out[channel] = {
            "requests_15m": len(items),
            "error_rate_15m": round(sum(f for f, _ in items) / len(items), 4),
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
