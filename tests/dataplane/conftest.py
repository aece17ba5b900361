"""Helpers for the data-plane tests: SDK clients pointed at the gateway, money, records.

Starting a gateway costs ~1.5 s (migrations + start-up), so most tests here share one gateway
per module (``denv``) and isolate themselves by tenant: every test gets fresh accounts/keys,
an emptied upstream recording, closed circuit breakers and the channels' default timeouts.
After each test the fixture checks the invariants every test must leave behind: no
background task still running, and no upstream connection still held by the gateway's pool.
Tests that need a pristine process (or PostgreSQL) use the stock ``env`` / ``env_both``.
"""

from __future__ import annotations

import secrets
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx
import openai
import pytest

from tests.conftest import PG_ADMIN_URL, Env, _env, _psql
from tests.support.upstream import ScriptedUpstream

MSGS = [{"role": "user", "content": "Say hello"}]

# gpt-test / claude-test prices (tests/conftest.py Env.model defaults), micro-USD per 1M tokens
RATES = {"input": 1_000_000, "output": 2_000_000, "cache_read": 100_000, "cache_write": 1_250_000}

CHANNEL_DEFAULTS = dict(connect_timeout=None, first_byte_timeout=None, idle_timeout=None, total_timeout=None)


def expected_cost(inp: int, out: int, cache_read: int = 0, cache_write: int = 0) -> int:
    """round-half-up((in*in_rate + out*out_rate + cr*cr_rate + cw*cw_rate) / 1e6) micro-USD."""
    total = (inp * RATES["input"] + out * RATES["output"] + cache_read * RATES["cache_read"]
             + cache_write * RATES["cache_write"])
    return (total + 500_000) // 1_000_000


def oa_client(env: Env, key: str, **kw: Any) -> openai.OpenAI:
    kw.setdefault("timeout", 20)
    return openai.OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0, **kw)


def an_client(env: Env, key: str | None, *, bearer: bool = False, **kw: Any) -> anthropic.Anthropic:
    """x-api-key by default; ``bearer=True`` sends ``Authorization: Bearer`` like Claude Code."""
    kw.setdefault("timeout", 20)
    creds = {"api_key": None, "auth_token": key} if bearer else {"api_key": key}
    return anthropic.Anthropic(base_url=env.url, max_retries=0, **creds, **kw)


def wait_for(pred: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll with a deadline (no sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class Tenant:
    """One account with one key and SDK clients for it."""

    def __init__(self, env: Env, balance_usd: int = 10) -> None:
        self.env = env
        # no console password: hashing one costs ~0.3 s and the data plane never needs it
        self.account = env.call(env.services.accounts.create(f"dp-{secrets.token_hex(6)}@example.com", None))
        if balance_usd:
            env.call(env.services.ledger.adjust(self.account.id, balance_usd * 1_000_000, note="test"))
        self.id: int = self.account.id
        self.key = env.key(self.id)
        self.oa = oa_client(env, self.key)
        self.an = an_client(env, self.key)

    def records(self) -> list[Any]:
        self.env.settle_all()
        return self.env.records(self.id)

    def only_record(self) -> Any:
        """The single request record of this tenant, checked to be settled exactly once."""
        recs = self.records()
        assert len(recs) == 1, [(r.id, r.status) for r in recs]
        rec = recs[0]
        assert rec.status != "pending" and rec.settled_at is not None, (rec.status, rec.settled_at)
        # settled exactly once: one roll-up row increment, at most one charge in the ledger
        total = self.env.call(self.env.gw.gateway.usage.key_summary(rec.key_id))["total"]
        assert (total["requests"], total["cost_micro"]) == (1, rec.cost_micro), total
        charges = [e for e in self.env.call(self.env.services.ledger.entries(self.id, limit=100))
                   if e.kind == "charge"]
        assert [(e.request_id, -e.amount_micro) for e in charges] == ([(rec.id, rec.cost_micro)] if rec.cost_micro
                                                                      else [])
        return rec

    def balance(self) -> int:
        return self.env.balance(self.id)

    def close(self) -> None:
        self.oa.close()
        self.an.close()


def assert_settled_uncharged(t: Tenant, start_balance: int) -> Any:
    """One settled record, cost 0, balance unchanged."""
    rec = t.only_record()
    assert rec.cost_micro == 0, (rec.status, rec.cost_micro, rec.usage_source)
    assert rec.input_tokens == rec.output_tokens == 0, (rec.input_tokens, rec.output_tokens)
    assert t.balance() == start_balance
    return rec


def assert_settled_for_relayed(t: Tenant, start_balance: int) -> Any:
    """A stream that broke after it started: one settled record, charged exactly for the tokens
    relayed before the failure (and the input the upstream read), or nothing when none were."""
    rec = t.only_record()
    if rec.output_tokens == 0:
        return assert_settled_uncharged(t, start_balance)
    assert rec.usage_source.startswith("relayed_"), rec.usage_source
    assert rec.cost_micro == expected_cost(rec.input_tokens, rec.output_tokens, rec.cache_read_tokens,
                                           rec.cache_write_tokens) > 0
    assert t.balance() == start_balance - rec.cost_micro
    return rec


def assert_error(r: httpx.Response, status: int, protocol: str, *, err_type: str | None = None,
                 code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    if protocol == "openai":
        assert set(body) == {"error"}, body
        err = body["error"]
        assert set(err) >= {"message", "type", "param", "code"}, err
        if code is not None:
            assert err["code"] == code, err
    else:
        assert body["type"] == "error", body
        err = body["error"]
        assert set(err) >= {"type", "message"}, err
    if err_type is not None:
        assert err["type"] == err_type, err
    assert isinstance(err["message"], str) and err["message"]
    return err


def reset_channels(env: Env) -> None:
    """Default timeouts, and every circuit breaker closed / 429 block lifted."""
    for name in ("oai", "ant"):
        env.call(env.services.catalog.update_channel(name, **CHANNEL_DEFAULTS))
    snap = env.call(env.services.catalog.snapshot(env.call(env.services.catalog.current_version())))
    for ch in snap.channels.values():
        st = env.gw.gateway.health.state(ch)
        st.state, st.consecutive_failures, st.blocked_until, st.probe_in_flight = "closed", 0, 0.0, False


def assert_quiescent(env: Env) -> None:
    env.settle_all()
    wait_for(lambda: env.gw.gateway.pool.open_connections() == 0, 10, "the gateway pool to release connections")


@pytest.fixture(scope="module")
def shared_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp: Path = tmp_path_factory.mktemp("dataplane")
    with ScriptedUpstream() as up:
        yield from _env(tmp, up, None, disconnect_drain_seconds=1.5)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_env_both(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Like shared_env, once on SQLite and once on a fresh PostgreSQL database."""
    tmp: Path = tmp_path_factory.mktemp("dataplane_" + request.param)
    db_url = None
    if request.param == "postgresql":
        name = "a2a_dp_" + uuid.uuid4().hex[:10]
        _psql(f'CREATE DATABASE "{name}"')
        db_url = f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        with ScriptedUpstream() as up:
            yield from _env(tmp, up, db_url, disconnect_drain_seconds=1.5)
    finally:
        if db_url is not None:
            _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reset(env: Env) -> Env:
    env.upstream.clear()
    env.upstream.set_default()
    reset_channels(env)
    return env


@pytest.fixture
def denv(shared_env: Env) -> Iterator[Env]:
    """The module's gateway, reset for one test (see the module docstring)."""
    yield _reset(shared_env)
    assert_quiescent(shared_env)


@pytest.fixture
def denv_both(shared_env_both: Env) -> Iterator[Env]:
    """denv on SQLite and on PostgreSQL."""
    yield _reset(shared_env_both)
    assert_quiescent(shared_env_both)


@pytest.fixture
def tenant(denv: Env) -> Iterator[Tenant]:
    t = Tenant(denv)
    try:
        yield t
    finally:
        t.close()
