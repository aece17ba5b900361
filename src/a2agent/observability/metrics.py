"""Prometheus metrics, one registry per gateway (no module-level state)."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from starlette.responses import Response


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("a2agent_requests_total", "API requests settled",
                                ["model", "status"], registry=self.registry)
        self.tokens = Counter("a2agent_tokens_total", "Tokens settled", ["kind"], registry=self.registry)
        self.cost = Counter("a2agent_charged_micro_usd_total", "Micro-USD charged", registry=self.registry)
        self.background = Gauge("a2agent_background_tasks", "Settlements and drains in progress",
                                registry=self.registry)
        self.channel_state = Gauge("a2agent_channel_open", "1 when a channel's circuit is open",
                                   ["channel"], registry=self.registry)
        # our own dependencies (issue 18)
        self.dependency_errors = Counter(
            "a2agent_dependency_errors_total", "Operations that failed because a dependency "
            "(database, redis) was unavailable", ["dependency"], registry=self.registry)
        self.dependency_up = Gauge("a2agent_dependency_up", "0 while a dependency is unavailable",
                                   ["dependency"], registry=self.registry)
        self.retry_queue = Gauge("a2agent_settlement_retry_queue",
                                 "Settlements waiting for the database (this process)",
                                 registry=self.registry)
        self.retry_dropped = Gauge("a2agent_settlement_retry_dropped",
                                   "Settlements the full retry queue left to the recovery path "
                                   "(this process, since start)", registry=self.registry)
        self.open_records = Gauge("a2agent_unsettled_requests",
                                  "Requests of this process with a pending record not yet settled",
                                  registry=self.registry)
        self.pending_records = Gauge("a2agent_pending_records",
                                     "Pending request records in the database (every instance; "
                                     "the last value read while it answers)",
                                     registry=self.registry)
        for dep in ("database", "redis"):
            self.dependency_errors.labels(dep)

    def dependency_error(self, dependency: str) -> None:
        self.dependency_errors.labels(dependency).inc()

    async def count_pending(self, db: Any) -> None:
        from sqlalchemy import func, select

        from a2agent.store.models import RequestRecord

        try:
            async with asyncio.timeout(1.0):
                async with db.read_conn() as conn:
                    n = await conn.scalar(select(func.count()).where(RequestRecord.status == "pending"))
        except Exception:  # noqa: BLE001 - the database may be away: keep the last value
            return
        self.pending_records.set(int(n or 0))

    def settled(self, model: str, status: str, outcome: Any, cost: int | None) -> None:
        self.requests.labels(model, status).inc()
        self.tokens.labels("input").inc(outcome.input_tokens)
        self.tokens.labels("output").inc(outcome.output_tokens)
        self.tokens.labels("cache_read").inc(outcome.cache_read_tokens)
        self.tokens.labels("cache_write").inc(outcome.cache_write_tokens)
        if cost:
            self.cost.inc(cost)

    def render(self, gw: Any) -> Response:
        self.background.set(len(gw.tasks))
        settlements = gw.relay.settlements
        self.retry_queue.set(len(settlements))
        self.retry_dropped.set(settlements.dropped)
        self.open_records.set(settlements.open)
        deps = gw.services.deps
        for dep in ("database", "redis"):
            self.dependency_up.labels(dep).set(0 if deps.is_down(dep) else 1)
        snap = gw.services.catalog._snapshot
        for ch in snap.channels.values():
            self.channel_state.labels(ch.name).set(1 if gw.health.describe(ch) == "open" else 0)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
