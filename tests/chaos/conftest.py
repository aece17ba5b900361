"""Fixtures of the chaos suite: private PostgreSQL clusters and Redis servers (never the
machine's shared ones), and a gateway wired to them with short, bounded database waits."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from a2agent.billing.money import Prices
from tests.conftest import Env
from tests.support.gateway import ThreadedGateway, make_settings
from tests.support.private_deps import (
    PrivatePostgres,
    PrivateRedis,
    make_template,
    private_pg_unavailable,
)
from tests.support.upstream import ScriptedUpstream

# bounded waits of the gateways under test (seconds): a request waits at most about
# acquire + statement timeout on the database before it is answered 503
ACQUIRE_TIMEOUT = 1.0
STATEMENT_TIMEOUT = 1.0
PRICES = Prices(3_000_000, 15_000_000, 300_000, 3_750_000)  # per 1M tokens: 3 $ in, 15 $ out
MODEL = "m"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/chaos/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.chaos)
            item.add_marker(pytest.mark.timeout(120))


@pytest.fixture(scope="session")
def pg_template() -> Iterator[Path]:
    reason = private_pg_unavailable()
    if reason:
        pytest.skip(reason)
    root = make_template()
    yield root
    import shutil

    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def private_pg(pg_template: Path) -> Iterator[PrivatePostgres]:
    pg = PrivatePostgres(pg_template)
    try:
        pg.start()
        pg.create_database()
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    r = PrivateRedis(tmp_path)
    r.start()
    try:
        yield r
    finally:
        r.stop()


@dataclass
class Chaos:
    env: Env
    key: str
    account_id: int
    start_balance: int

    @property
    def url(self) -> str:
        return self.env.url

    def metric(self, name: str, labels: str = "") -> float:
        """One sample of /metrics, e.g. metric("a2agent_dependency_up", '{dependency="redis"}')."""
        import httpx

        text = httpx.get(self.url + "/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith(f"{name}{labels} "):
                return float(line.rsplit(" ", 1)[1])
        raise AssertionError(f"metric {name}{labels} not found")


def chaos_env(tmp_path: Path, upstream: ScriptedUpstream, db_url: str | None,
              **overrides: Any) -> Iterator[Chaos]:
    overrides.setdefault("db_acquire_timeout", ACQUIRE_TIMEOUT)
    overrides.setdefault("db_statement_timeout", STATEMENT_TIMEOUT)
    overrides.setdefault("db_pool_size", 4)
    overrides.setdefault("shutdown_grace_seconds", 5.0)
    overrides.setdefault("disconnect_drain_seconds", 2.0)
    settings = make_settings(tmp_path / "data", db_url, **overrides)
    with ThreadedGateway(settings) as gw:
        env = Env(gw, upstream)
        env.channel("up", "openai")
        env.call(env.services.catalog.add_model(MODEL, channel="up", prices=PRICES,
                                                upstream_model="gpt-4o-mini"))
        acc = env.account(f"chaos{secrets.token_hex(3)}@example.com", balance_usd=1000)
        key = env.key(acc.id)
        yield Chaos(env, key, acc.id, env.balance(acc.id))


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as up:
        yield up
