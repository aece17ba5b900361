"""Every money exit path under load: success, upstream faults, client disconnects, balance
running out, SIGTERM drain and SIGKILL recovery. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from pathlib import Path

import httpx
import openai

from a2agent.billing.money import Prices, cost_micro
from a2agent.billing.verify import verify
from tests.conftest import Env, run_cli
from tests.support.gateway import GatewayProcess
from tests.support.script import Script

FAULTS = [
    None, None, None,
    {"status": 500}, {"status": 429}, {"reset_before_headers": True},
    {"reset_mid_stream": 2}, {"truncated_sse": 2}, {"error_event_mid_stream": 2},
]


async def _one(client: httpx.AsyncClient, key: str, i: int, rng: random.Random) -> str:
    protocol = rng.choice(["openai", "anthropic"])
    stream = rng.random() < 0.6
    disconnect = stream and rng.random() < 0.25
    if protocol == "openai":
        url, body = "/v1/chat/completions", {"model": "gpt-test", "messages": [{"role": "user", "content": f"q{i}"}]}
    else:
        url, body = "/v1/messages", {"model": "claude-test", "max_tokens": 64,
                                     "messages": [{"role": "user", "content": f"q{i}"}]}
    body["stream"] = stream
    headers = {"authorization": f"Bearer {key}"}
    if not stream:
        r = await client.post(url, json=body, headers=headers)
        return f"{r.status_code}"
    async with client.stream("POST", url, json=body, headers=headers) as r:
        if disconnect:
            async for _ in r.aiter_raw():
                break
            return "disconnected"
        await r.aread()
        return f"{r.status_code}"


def _enqueue_random(env: Env, n: int, rng: random.Random) -> None:
    for _ in range(n):
        fault = rng.choice(FAULTS)
        env.upstream.enqueue(Script(text="one two three four five six seven eight", chunk_delay=0.01,
                                    **(fault or {})))


def _check_books(env: Env, account_id: int) -> list:
    env.settle_all()
    records = env.records(account_id)
    assert records and all(r.settled_at is not None and r.status != "pending" for r in records)
    prices = {m.model_id: m.prices for m in env.call(env.services.catalog.list_models())}
    for r in records:
        p = prices[r.model]
        assert r.cost_micro == cost_micro(p, r.input_tokens, r.output_tokens, r.cache_read_tokens,
                                          r.cache_write_tokens)
        if r.status not in ("ok", "client_disconnect") and not (r.usage_source or "").startswith("relayed_"):
            assert r.cost_micro == 0, (r.status, r.error_type)
    entries = env.call(env.services.ledger.entries(account_id, limit=100_000))
    charges = [e for e in entries if e.kind == "charge"]
    assert sorted(e.request_id for e in charges) == sorted(r.id for r in records if r.cost_micro)
    assert env.call(verify(env.services.db)) == []
    return records


def test_hundreds_of_concurrent_requests_with_faults_and_disconnects(env_both: Env) -> None:
    env = env_both
    rng = random.Random(7)
    acc = env.account(balance_usd=100)
    env.call(env.services.accounts.set_limits(acc.id, concurrency=0))  # disconnected streams still drain
    env.gw.gateway.health.failure_threshold = 10**6  # faults are the point here, not the breaker
    key = env.key(acc.id)
    n = 240
    _enqueue_random(env, n, rng)

    async def main() -> list[str]:
        limits = httpx.Limits(max_connections=48)
        async with httpx.AsyncClient(base_url=env.url, timeout=30, limits=limits) as client:
            sem = asyncio.Semaphore(48)

            async def run(i: int) -> str:
                async with sem:
                    return await _one(client, key, i, rng)

            return await asyncio.gather(*(run(i) for i in range(n)))

    outcomes = asyncio.run(main())
    assert "disconnected" in outcomes and "200" in outcomes
    records = _check_books(env, acc.id)
    assert len(records) == n
    statuses = {r.status for r in records}
    assert {"ok", "upstream_error", "client_disconnect"} <= statuses
    assert env.balance(acc.id) == 100_000_000 - sum(r.cost_micro for r in records)
    assert httpx.get(env.url + "/readyz").status_code == 200


def test_balance_running_out_mid_burst(env: Env) -> None:
    # each answer costs 1 output token... make it expensive: 1000 USD per 1M output tokens
    env.model("pricey", "oai", input_usd=100, output_usd=1000)
    acc = env.account(balance_usd=0)
    env.call(env.services.ledger.adjust(acc.id, 30_000))  # 0.03 USD
    env.call(env.services.accounts.set_limits(acc.id, concurrency=4))
    key = env.key(acc.id)
    client = openai.AsyncOpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)

    async def one(i: int) -> str:
        try:
            await client.chat.completions.create(model="pricey", messages=[{"role": "user", "content": f"x{i}"}],
                                                 max_tokens=5)
            return "ok"
        except openai.PermissionDeniedError as exc:
            assert exc.body["code"] == "insufficient_balance"
            return "broke"
        except openai.RateLimitError:
            return "concurrency"

    async def main() -> list[str]:
        results = []
        for wave in range(10):
            results += await asyncio.gather(*(one(wave * 4 + i) for i in range(4)))
            env.settle_all()
        return results

    results = asyncio.run(main())
    assert "ok" in results and results[-1] == "broke"
    records = _check_books(env, acc.id)
    max_cost = max(r.cost_micro for r in records)
    # each request held its maximum cost (max_tokens=5) first: the balance never goes below zero
    assert 0 <= env.balance(acc.id) < max_cost
    # a refusal while others hold the balance is not final (their holds come back at settlement),
    # but once the balance cannot cover one request every request is refused
    assert results[-4:] == ["broke"] * 4


def _prepare_cli_env(tmp_path: Path, upstream) -> tuple[dict[str, str], str]:
    env = {"A2AGENT_DATA_DIR": str(tmp_path / "data")}
    for args in (
        ("user", "create", "k@example.com", "--password", "password123", "--balance", "100"),
        ("channel", "add", "up", "--protocol", "openai", "--base-url", upstream.openai_base),
        ("model", "add", "m", "--channel", "up", "--input-price", "1", "--output-price", "2"),
    ):
        assert run_cli(*args, env=env).returncode == 0
    key = run_cli("key", "create", "k@example.com", env=env).stdout.strip().splitlines()[-1]
    return env, key


def _stream_some(url: str, key: str, n: int, started: "list[int]") -> None:
    async def main() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            async def one(i: int) -> None:
                body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": f"s{i}"}]}
                try:
                    async with client.stream("POST", "/v1/chat/completions", json=body,
                                             headers={"authorization": f"Bearer {key}"}) as r:
                        async for _ in r.aiter_raw():
                            started.append(i)
                except httpx.HTTPError:
                    pass

            await asyncio.gather(*(one(i) for i in range(n)))

    asyncio.run(main())


def _records(data_dir: Path) -> list[dict]:
    import sqlite3

    con = sqlite3.connect(data_dir / "a2agent.db")
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute("select * from request_records")]
    finally:
        con.close()


def _start_streams(gw: GatewayProcess, key: str, n: int) -> threading.Thread:
    """n concurrent streams through the gateway; returns once every one has received bytes."""
    started: list[int] = []
    t = threading.Thread(target=_stream_some, args=(gw.url, key, n, started), daemon=True)
    t.start()
    deadline = time.monotonic() + 30
    while len(set(started)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(set(started)) == n, "streams did not start"
    return t


def test_sigkill_mid_stream_then_restart_settles_pending(tmp_path: Path, upstream) -> None:
    env, key = _prepare_cli_env(tmp_path, upstream)
    upstream.set_default(Script(text=" ".join(["word"] * 400), chunk_delay=0.05))
    gw = GatewayProcess(tmp_path / "data", env={"A2AGENT_STREAM_CHECKPOINT_SECONDS": "0.2"}).start()
    t = _start_streams(gw, key, 12)
    # each stream notes what it relayed on its pending record as it goes
    deadline = time.monotonic() + 30
    while not all(r["output_tokens"] > 0 for r in _records(tmp_path / "data")):
        assert time.monotonic() < deadline, "no stream checkpoint was written"
        time.sleep(0.05)
    gw.kill()
    t.join(30)
    pending = [r for r in _records(tmp_path / "data") if r["settled_at"] is None]
    assert len(pending) == 12
    with GatewayProcess(tmp_path / "data", port=gw.port):
        rows = _records(tmp_path / "data")
    assert all(r["settled_at"] is not None for r in rows)
    recovered = [r for r in rows if r["recovered"]]
    assert len(recovered) == 12
    assert all(r["status"] == "recovered" and r["cost_micro"] > 0 for r in recovered)
    # the output relayed before the crash is charged, from the last checkpoint
    assert all(r["output_tokens"] > 0 and r["usage_source"] == "recovered_relayed" for r in recovered)
    assert all(r["cost_micro"] == cost_micro(Prices(1_000_000, 2_000_000, 0, 0), r["input_tokens"],
                                             r["output_tokens"]) for r in recovered)
    result = run_cli("db", "verify", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = json.loads(run_cli("user", "show", "k@example.com", "--json", env=env).stdout)
    assert shown["balance_micro_usd"] == 100_000_000 - sum(r["cost_micro"] for r in rows)


def test_sigterm_drains_in_flight_streams(tmp_path: Path, upstream) -> None:
    env, key = _prepare_cli_env(tmp_path, upstream)
    upstream.set_default(Script(text=" ".join(["word"] * 60), chunk_delay=0.03))
    gw = GatewayProcess(tmp_path / "data").start()
    t = _start_streams(gw, key, 6)
    assert gw.terminate(60) == 0
    t.join(30)
    rows = _records(tmp_path / "data")
    assert len(rows) == 6
    assert all(r["settled_at"] is not None and r["status"] == "ok" and not r["recovered"] for r in rows)
    assert all(r["usage_source"] == "upstream" for r in rows)
    assert run_cli("db", "verify", env=env).returncode == 0
