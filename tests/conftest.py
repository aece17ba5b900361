"""Shared fixtures: real SQLite files, real PostgreSQL databases, real loopback HTTP."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from a2agent.billing.money import Prices
from a2agent.services import Services

from tests.support.gateway import ThreadedGateway, make_settings
from tests.support.upstream import ScriptedUpstream

PG_ADMIN_URL = os.environ.get("A2AGENT_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def _psql(sql: str) -> None:
    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


_UNIT_DIRS = ("unit", "translate")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The fast tier (`pytest -m unit`): pure code, no server and no database server."""
    root = Path(__file__).resolve().parent
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(root)
        if rel.parts and rel.parts[0] in _UNIT_DIRS:
            item.add_marker(pytest.mark.unit)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    name = "a2a_test_" + uuid.uuid4().hex[:10]
    _psql(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'a2agent.db'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def upstream() -> Iterator[ScriptedUpstream]:
    with ScriptedUpstream() as up:
        yield up


class Env:
    """A running gateway wired to a scripted upstream, with helpers to set up tenants."""

    def __init__(self, gw: ThreadedGateway, upstream: ScriptedUpstream) -> None:
        self.gw = gw
        self.upstream = upstream
        self.services: Services = gw.gateway.services

    @property
    def url(self) -> str:
        return self.gw.url

    def call(self, coro: Any) -> Any:
        return self.gw.call(coro)

    def account(self, email: str | None = None, balance_usd: int = 10, **kw: Any) -> Any:
        email = email or f"u{secrets.token_hex(4)}@example.com"
        acc = self.call(self.services.accounts.create(email, "password123", **kw))
        if balance_usd:
            self.call(self.services.ledger.adjust(acc.id, balance_usd * 1_000_000, note="test"))
        return acc

    def key(self, account_id: int, label: str | None = None) -> str:
        _, value = self.call(self.services.accounts.create_key(account_id, label))
        return value

    def channel(self, name: str, protocol: str, **kw: Any) -> None:
        base = self.upstream.openai_base if protocol == "openai" else self.upstream.anthropic_base
        kw.setdefault("base_url", base)
        self.call(self.services.catalog.add_channel(name, protocol=protocol, api_key=f"upstream-{name}", **kw))

    def model(self, model_id: str, channel: str, *, input_usd: float = 1.0, output_usd: float = 2.0,
              upstream_model: str | None = None, cache_read_usd: float | None = None,
              cache_write_usd: float | None = None) -> None:
        def m(x: float) -> int:
            return int(round(x * 1_000_000))

        prices = Prices(m(input_usd), m(output_usd),
                        m(cache_read_usd if cache_read_usd is not None else input_usd / 10),
                        m(cache_write_usd if cache_write_usd is not None else input_usd * 1.25))
        self.call(self.services.catalog.add_model(model_id, channel=channel, prices=prices,
                                                  upstream_model=upstream_model))

    def balance(self, account_id: int) -> int:
        return self.call(self.services.accounts.get(account_id)).balance_micro

    def settle_all(self) -> None:
        self.gw.wait_idle()

    def records(self, account_id: int) -> list[Any]:
        return self.call(self.gw.gateway.usage.recent_requests(account_id, limit=10_000))


def _env(tmp_path: Path, upstream: ScriptedUpstream, db: str | None, **overrides: Any) -> Iterator[Env]:
    settings = make_settings(tmp_path / "data", db, **overrides)
    with ThreadedGateway(settings) as gw:
        env = Env(gw, upstream)
        env.channel("oai", "openai")
        env.channel("ant", "anthropic")
        env.model("gpt-test", "oai", upstream_model="gpt-4o-mini")
        env.model("claude-test", "ant", upstream_model="claude-sonnet-4-5")
        yield env


@pytest.fixture
def env(tmp_path: Path, upstream: ScriptedUpstream) -> Iterator[Env]:
    """Gateway on a SQLite file with channels 'oai' and 'ant' and models gpt-test / claude-test."""
    yield from _env(tmp_path, upstream, None, disconnect_drain_seconds=3.0)


@pytest.fixture
def env_both(tmp_path: Path, upstream: ScriptedUpstream, db_url: str) -> Iterator[Env]:
    """Same as env, once on SQLite and once on PostgreSQL."""
    yield from _env(tmp_path, upstream, db_url, disconnect_drain_seconds=3.0)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def run_cli(*args: str, env: dict[str, str] | None = None, input: str | None = None) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run([sys.executable, "-m", "a2agent.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, input=input, timeout=120)
