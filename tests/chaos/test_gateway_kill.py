"""The gateway SIGKILLed during a settlement batch. A session holds the accounts' rows, so
the gateway's group-commit batches wait mid-transaction (pending records inserted, charges
blocked); the gateway is killed then, the rows released, and the gateway started again.
Nothing half-written survives the kill; what was answered but not yet settled is settled
once by the recovery path at the next start; db verify is clean; no pending record is left."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import asyncpg
import httpx

from a2agent.billing.money import cost_micro
from tests.chaos.conftest import PRICES
from tests.chaos.harness import Load, report
from tests.conftest import run_cli
from tests.support.gateway import GatewayProcess
from tests.support.private_deps import PrivatePostgres
from tests.support.upstream import ScriptedUpstream


def _records(pg: PrivatePostgres) -> dict[str, tuple[str, int, int, int | None, int]]:
    rows = pg.sql("SELECT id, status, input_tokens, output_tokens, settled_at IS NULL AS open, "
                  "cost_micro FROM request_records", db="a2a")
    return {r["id"]: (r["status"], r["input_tokens"], r["output_tokens"], r["open"], r["cost_micro"])
            for r in rows}


def test_gateway_killed_during_settlement_batch(tmp_path: Path, private_pg: PrivatePostgres) -> None:
    env = {"A2AGENT_DATA_DIR": str(tmp_path / "data"), "A2AGENT_DATABASE_URL": private_pg.url,
           "A2AGENT_DB_ACQUIRE_TIMEOUT": "1", "A2AGENT_DB_STATEMENT_TIMEOUT": "8",
           "A2AGENT_DB_POOL_SIZE": "4"}
    with ScriptedUpstream() as up:
        for args in (("db", "upgrade"),
                     ("channel", "add", "up", "--protocol", "openai", "--base-url", up.openai_base),
                     ("model", "add", "m", "--channel", "up", "--upstream-model", "gpt-4o-mini",
                      "--input-price", "3", "--output-price", "15"),
                     ("user", "create", "k@example.com", "--password", "password123",
                      "--balance", "1000")):
            out = run_cli(*args, env=env)
            assert out.returncode == 0, out.stderr
        key = run_cli("key", "create", "k@example.com", env=env).stdout.strip().splitlines()[-1]
        start_balance = json.loads(run_cli("user", "show", "k@example.com", "--json",
                                           env=env).stdout)["balance_micro_usd"]
        gw = GatewayProcess(tmp_path / "data", env=env).start()
        locked, release = threading.Event(), threading.Event()

        def hold_accounts() -> None:
            async def run() -> None:
                conn = await asyncpg.connect(private_pg.url)
                async with conn.transaction():
                    await conn.execute("SELECT id FROM accounts FOR UPDATE")
                    locked.set()
                    while not release.is_set():
                        await asyncio.sleep(0.02)
                await conn.close()

            asyncio.run(run())

        holder = threading.Thread(target=hold_accounts, daemon=True)
        try:
            with Load(gw.url, key, "m") as load:
                load.wait_for(40)
                holder.start()
                assert locked.wait(10)
                # a settlement batch of the gateway is waiting mid-transaction on the rows
                deadline = time.monotonic() + 10
                while private_pg.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'a2a' "
                                     "AND wait_event_type = 'Lock'")[0][0] == 0:
                    assert time.monotonic() < deadline, "no batch waited on the lock"
                    time.sleep(0.05)
                t_kill = time.monotonic()
                gw.kill()
            release.set()
            holder.join(10)
            t_restart = time.monotonic()
            gw = GatewayProcess(tmp_path / "data", env=env).start()
            ready_in = time.monotonic() - t_restart
            r = httpx.post(gw.url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                           json={"model": "m", "messages": [{"role": "user", "content": "after"}]},
                           timeout=20)
            assert r.status_code == 200
            assert gw.terminate(30) == 0  # drains: its settlement is written before it exits
        finally:
            release.set()
            gw.kill()
        answered = [s for s in load.shots if s.t1 < t_kill]
        assert answered and all(s.status in (200, 503) for s in answered)
        records = _records(private_pg)
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
        after = json.loads(run_cli("user", "show", "k@example.com", "--json",
                                   env=env).stdout)["balance_micro_usd"]
        charged = start_balance - after
        assert charged == sum(rec[4] for rec in records.values())
        assert recovered > 0 or settled_ok == len([s for s in answered if s.status == 200])
        report("gateway SIGKILLed during a settlement batch", load.shots, (t_kill, t_restart),
               answered_before_kill=len(answered), settled_before_kill=settled_ok,
               settled_by_recovery_at_restart=recovered, restart_ready_s=ready_in,
               charged_micro=charged, verify="clean", pending_left=0)
