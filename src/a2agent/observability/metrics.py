"""Prometheus metrics, one registry per gateway (no module-level state)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest
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
        snap = gw.services.catalog._snapshot
        for ch in snap.channels.values():
            self.channel_state.labels(ch.name).set(1 if gw.health.describe(ch) == "open" else 0)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)
