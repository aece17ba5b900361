"""PostgreSQL failing under load: restarted, stopped for a while, its backends killed
mid-transaction, and slow beyond the statement timeout. Each on a private cluster."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.conftest import PRICES, STATEMENT_TIMEOUT, Chaos, chaos_env
from tests.chaos.harness import (
    OUTAGE_SECONDS,
    Load,
    ReadyWatch,
    assert_clear_answers,
    check_money,
    report,
)
from tests.support.private_deps import PrivatePostgres
from tests.support.upstream import ScriptedUpstream

RECOVERY_SECONDS = 3.0  # a 200 again this soon after the database is back


@pytest.fixture
def chaos(tmp_path: Path, upstream: ScriptedUpstream, private_pg: PrivatePostgres) -> Iterator[Chaos]:
    yield from chaos_env(tmp_path, upstream, private_pg.url)


def test_postgres_stopped_under_load(chaos: Chaos, private_pg: PrivatePostgres,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with ReadyWatch(chaos.url) as ready, Load(chaos.url, chaos.key, "m") as load:
        load.wait_for(40)
        t_down = time.monotonic()
        private_pg.stop()
        unready_in = ready.first(t_down, 503)
        _other_endpoints_answer_503(chaos)
        time.sleep(max(OUTAGE_SECONDS - (time.monotonic() - t_down), 0))
        assert chaos.metric("a2agent_dependency_up", '{dependency="database"}') == 0
        private_pg.start()
        t_up = time.monotonic()
        ready_in = ready.first(t_up, 200)
        recovered_in = load.wait_ok_after(t_up)
        n = len(load.shots)
        load.wait_for(n + 40)
    assert not load.failures, load.failures[:5]
    assert_clear_answers(load.shots)
    during = [s for s in load.shots if t_down + 0.5 < s.t0 < t_up - 0.5]
    assert during and all(s.status == 503 for s in during)
    assert unready_in < 1.0 and ready_in < 1.5, (unready_in, ready_in)
    assert recovered_in < RECOVERY_SECONDS
    money = check_money(chaos.env, chaos.account_id, chaos.start_balance, load.shots, PRICES)
    assert chaos.metric("a2agent_dependency_errors_total", '{dependency="database"}') > 0
    assert chaos.metric("a2agent_settlement_retry_queue") == 0
    assert chaos.metric("a2agent_pending_records") == 0
    # one line when it went, one when it was back; no traceback per request
    states = [r.getMessage() for r in caplog.records if r.name == "a2agent.dependencies"]
    assert ["down" if "unavailable" in m else "back" for m in states] == ["down", "back"], states
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    report("postgresql stopped", load.shots, (t_down, t_up), unready_after_s=unready_in,
           ready_after_s=ready_in, first_200_after_s=recovered_in, charged_micro=money.charged,
           expected_micro=money.expected, verify="clean", pending_left=0)


def _other_endpoints_answer_503(chaos: Chaos) -> None:
    """Every endpoint that needs the database says so in its protocol, never a 500."""
    import httpx

    auth = {"authorization": f"Bearer {chaos.key}", "anthropic-version": "2023-06-01"}
    with httpx.Client(base_url=chaos.url, timeout=10) as c:
        for method, path, body, want in (
                ("GET", "/v1/models", None, "service_unavailable"),
                ("GET", "/v1/usage", None, "service_unavailable"),
                ("POST", "/v1/messages/count_tokens",
                 {"model": "m", "messages": [{"role": "user", "content": "x"}]}, "overloaded_error")):
            r = c.request(method, path, headers=auth, json=body)
            assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1, (path, r.text)
            err = r.json()["error"]
            assert err["type"] == want and "database" in err["message"], (path, err)
        r = c.get("/login")  # the console: a plain 503 page, not a traceback
        assert r.status_code in (200, 503), r.status_code


def test_postgres_restarted_under_load(chaos: Chaos, private_pg: PrivatePostgres) -> None:
    with Load(chaos.url, chaos.key, "m") as load:
        load.wait_for(40)
        t_down = time.monotonic()
        private_pg.stop()
        private_pg.start()  # `pg_ctl restart -m fast`, in two steps
        t_up = time.monotonic()
        recovered_in = load.wait_ok_after(t_up)
        n = len(load.shots)
        load.wait_for(n + 40)
    assert not load.failures, load.failures[:5]
    assert_clear_answers(load.shots)
    assert recovered_in < RECOVERY_SECONDS
    money = check_money(chaos.env, chaos.account_id, chaos.start_balance, load.shots, PRICES)
    report("postgresql restarted (fast)", load.shots, (t_down, t_up), first_200_after_s=recovered_in,
           charged_micro=money.charged, expected_micro=money.expected, verify="clean", pending_left=0)


def test_postgres_backends_terminated_mid_transaction(chaos: Chaos, private_pg: PrivatePostgres) -> None:
    """pg_terminate_backend on every gateway connection, ten times a second for a while:
    batches die mid-transaction (some between their writes, some at COMMIT)."""
    killed = 0
    with Load(chaos.url, chaos.key, "m") as load:
        load.wait_for(40)
        t_start = time.monotonic()
        while time.monotonic() < t_start + OUTAGE_SECONDS:
            killed += private_pg.terminate_backends()
            time.sleep(0.1)
        t_end = time.monotonic()
        recovered_in = load.wait_ok_after(t_end)
        n = len(load.shots)
        load.wait_for(n + 40)
    assert killed > 0
    assert not load.failures, load.failures[:5]
    assert_clear_answers(load.shots)
    assert recovered_in < RECOVERY_SECONDS
    money = check_money(chaos.env, chaos.account_id, chaos.start_balance, load.shots, PRICES)
    report("postgresql backends terminated", load.shots, (t_start, t_end), backends_killed=killed,
           first_200_after_s=recovered_in, charged_micro=money.charged, expected_micro=money.expected,
           verify="clean", pending_left=0)


def test_postgres_slow_beyond_statement_timeout(chaos: Chaos, private_pg: PrivatePostgres) -> None:
    """Another session holds an exclusive lock on the accounts table: every key lookup and
    settlement waits on it, the statement timeout ends the wait, the caller gets a 503 in
    bounded time; when the lock goes, answers are 200 again."""
    import asyncio

    import asyncpg

    locked = threading.Event()
    release = threading.Event()

    def hold_lock() -> None:
        async def run() -> None:
            conn = await asyncpg.connect(private_pg.url)
            try:
                async with conn.transaction():
                    await conn.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
                    locked.set()
                    while not release.is_set():
                        await asyncio.sleep(0.02)
            finally:
                await conn.close()

        asyncio.run(run())

    holder = threading.Thread(target=hold_lock, daemon=True)
    with Load(chaos.url, chaos.key, "m") as load:
        load.wait_for(40)
        holder.start()
        assert locked.wait(10)
        t_start = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        release.set()
        holder.join(10)
        t_end = time.monotonic()
        recovered_in = load.wait_ok_after(t_end)
        n = len(load.shots)
        load.wait_for(n + 40)
    assert not load.failures, load.failures[:5]
    # bounded: about two statement timeouts (one batch ahead, then its own)
    assert_clear_answers(load.shots, max_latency=2 * STATEMENT_TIMEOUT + 2.0)
    during = [s for s in load.shots if t_start + 0.2 < s.t0 and s.t1 < t_end]
    assert during and all(s.status == 503 for s in during)
    assert recovered_in < RECOVERY_SECONDS
    money = check_money(chaos.env, chaos.account_id, chaos.start_balance, load.shots, PRICES)
    report("postgresql slow (lock beyond statement timeout)", load.shots, (t_start, t_end),
           first_200_after_s=recovered_in, charged_micro=money.charged,
           expected_micro=money.expected, verify="clean", pending_left=0)
