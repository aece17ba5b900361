"""The gateway SIGKILLed during a settlement batch. On PostgreSQL a session holds the
accounts' rows, so the gateway's group-commit batches wait mid-transaction (pending records
inserted, charges blocked); on SQLite another process holds the file's write lock, so the
batch waits to begin. The gateway is killed then, the lock released, the gateway started
again. Nothing half-written survives the kill; what was answered but not yet settled is
settled once by the recovery path at the next start; db verify is clean; no pending record."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from a2agent.billing.money import cost_micro
from tests.chaos.conftest import PRICES
from tests.chaos.harness import Load, report
from tests.conftest import run_cli
from tests.support.gateway import GatewayProcess
from tests.support.private_deps import PrivatePostgres
from tests.support.upstream import ScriptedUpstream

Record = tuple[str, int, int, bool, int]  # status, input, output, still pending, cost


class Backend:
    """One database, with a way to make the gateway's writes wait (and to stop that)."""

    url: str
    records: Callable[[], dict[str, Record]]

    def hold(self) -> None: ...
    def wait_blocked(self) -> None: ...
    def release(self) -> None: ...


class PostgresBackend(Backend):
    def __init__(self, pg: PrivatePostgres) -> None:
        self.pg, self.url = pg, pg.url
        self._locked, self._release = threading.Event(), threading.Event()
        self._holder = threading.Thread(target=lambda: asyncio.run(self._hold()), daemon=True)

    async def _hold(self) -> None:
        conn = await asyncpg.connect(self.pg.url)
        async with conn.transaction():
            await conn.execute("SELECT id FROM accounts FOR UPDATE")
            self._locked.set()
            while not self._release.is_set():
                await asyncio.sleep(0.02)
        await conn.close()

    def hold(self) -> None:
        self._holder.start()
        assert self._locked.wait(10)

    def wait_blocked(self) -> None:
        """Until a settlement batch of the gateway waits mid-transaction on the rows."""
        deadline = time.monotonic() + 10
        while self.pg.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'a2a' "
                          "AND wait_event_type = 'Lock'")[0][0] == 0:
            assert time.monotonic() < deadline, "no batch waited on the lock"
            time.sleep(0.05)

    def release(self) -> None:
        self._release.set()
        if self._holder.is_alive():
            self._holder.join(10)

    def records(self) -> dict[str, Record]:
        rows = self.pg.sql("SELECT id, status, input_tokens, output_tokens, settled_at IS NULL, "
                           "cost_micro FROM request_records", db="a2a")
        return {r[0]: (r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows}


LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


class SQLiteBackend(Backend):
    def __init__(self, path: Path) -> None:
        self.path, self.url = path, f"sqlite:///{path}"
        self._locker: subprocess.Popen[str] | None = None

    def hold(self) -> None:
        self._locker = subprocess.Popen([sys.executable, "-c", LOCKER, str(self.path)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._locker.stdout is not None
        assert self._locker.stdout.readline().strip() == "locked"

    def wait_blocked(self) -> None:
        time.sleep(1.0)  # the writer thread is in SQLite's busy wait for the lock

    def release(self) -> None:
        if self._locker is not None and self._locker.poll() is None:
            assert self._locker.stdin is not None
            self._locker.stdin.close()
            self._locker.wait(10)

    def records(self) -> dict[str, Record]:
        conn = sqlite3.connect(self.path)
        try:
            rows = conn.execute("SELECT id, status, input_tokens, output_tokens, "
                                "settled_at IS NULL, cost_micro FROM request_records").fetchall()
        finally:
            conn.close()
        return {r[0]: (r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b: Backend
    if request.param == "sqlite":
        b = SQLiteBackend(tmp_path / "a2agent.db")
    else:
        b = PostgresBackend(request.getfixturevalue("private_pg"))
    yield b
    b.release()


def _setup(env: dict[str, str], upstream: ScriptedUpstream) -> tuple[str, int]:
    for args in (("db", "upgrade"),
                 ("channel", "add", "up", "--protocol", "openai", "--base-url", upstream.openai_base),
                 ("model", "add", "m", "--channel", "up", "--upstream-model", "gpt-4o-mini",
                  "--input-price", "3", "--output-price", "15"),
                 ("user", "create", "k@example.com", "--password", "password123", "--balance", "1000")):
        out = run_cli(*args, env=env)
        assert out.returncode == 0, out.stderr
    key = run_cli("key", "create", "k@example.com", env=env).stdout.strip().splitlines()[-1]
    return key, _balance(env)


def _balance(env: dict[str, str]) -> int:
    out = run_cli("user", "show", "k@example.com", "--json", env=env)
    return int(json.loads(out.stdout)["balance_micro_usd"])


def test_gateway_killed_during_settlement_batch(tmp_path: Path, backend: Backend) -> None:
    env = {"A2AGENT_DATA_DIR": str(tmp_path / "data"), "A2AGENT_DATABASE_URL": backend.url,
           "A2AGENT_DB_ACQUIRE_TIMEOUT": "8", "A2AGENT_DB_STATEMENT_TIMEOUT": "8",
           "A2AGENT_DB_POOL_SIZE": "4"}
    with ScriptedUpstream() as up:
        key, start_balance = _setup(env, up)
        gw = GatewayProcess(tmp_path / "data", env=env).start()
        try:
            with Load(gw.url, key, "m") as load:
                load.wait_for(40)
                backend.hold()
                backend.wait_blocked()
                t_kill = time.monotonic()
                gw.kill()
            backend.release()
            t_restart = time.monotonic()
            gw = GatewayProcess(tmp_path / "data", env=env).start()
            ready_in = time.monotonic() - t_restart
            r = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                           json={"model": "m", "messages": [{"role": "user", "content": "after"}]},
                           timeout=20)
            assert r.status_code == 200
            assert gw.terminate(30) == 0  # drains: its settlement is written before it exits
        finally:
            backend.release()
            gw.kill()
    _check(env, backend, load.shots, t_kill, t_restart, start_balance, ready_in)


def _check(env: dict[str, str], backend: Backend, shots: list[Any], t_kill: float,
           t_restart: float, start_balance: int, ready_in: float) -> None:
    answered = [s for s in shots if s.t1 < t_kill]
    assert answered and all(s.status in (200, 503) for s in answered)
    records = backend.records()
    assert not [rid for rid, rec in records.items() if rec[3]], "a pending record was left"
    out = run_cli("db", "verify", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    settled_ok = recovered = 0
    for s in answered:
        rec = records.get(s.request_id or "")
        if s.status == 503:
            assert rec is None or rec[4] == 0, f"refused request {s.request_id} was charged"
            continue
        assert rec is not None, f"answered request {s.request_id} has no record"
        if rec[0] == "ok":  # settled before the kill: its own usage, exactly
            assert rec[4] == cost_micro(PRICES, s.input_tokens, s.output_tokens, 0, 0)
            settled_ok += 1
        else:  # its settlement died with the process: settled once at the restart
            assert rec[0] == "recovered", rec
            recovered += 1
    charged = start_balance - _balance(env)
    assert charged == sum(rec[4] for rec in records.values())
    report(f"gateway SIGKILLed during a settlement batch ({backend.url.split(':')[0]})", shots,
           (t_kill, t_restart), answered_before_kill=len(answered), settled_before_kill=settled_ok,
           settled_by_recovery_at_restart=recovered, restart_ready_s=ready_in,
           charged_micro=charged, verify="clean", pending_left=0)
