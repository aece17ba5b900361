"""Money on POST /v1/responses, both translation lanes, on SQLite and PostgreSQL: every exit
path (answer, upstream error before and after the first byte, timeout, error event, client
disconnect mid-stream) settles once; cached tokens are charged at the cache rate; a failure
after the stream started ends it with ``response.failed``; ``db verify`` stays clean."""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from a2agent.billing.money import cost_micro
from a2agent.billing.verify import verify
from tests.billing.test_exit_paths import _prepare_cli_env, _records
from tests.conftest import Env, run_cli
from tests.support.gateway import GatewayProcess
from tests.dataplane.conftest import wait_for
from tests.support.script import Script, Usage

USAGE = Usage(input_tokens=400, output_tokens=30, cache_read_tokens=600, cache_write_tokens=50)
MODELS = {"chat": "gpt-test", "messages": "claude-test"}


def _post(env: Env, key: str, model: str, stream: bool, *, disconnect: bool = False) -> tuple[int, list[str]]:
    """(status, the SSE event types received) for one request."""
    body = {"model": model, "input": "count to ten", "stream": stream}
    headers = {"authorization": f"Bearer {key}"}
    with httpx.Client(base_url=env.url, timeout=30) as client:
        if not stream:
            r = client.post("/v1/responses", json=body, headers=headers)
            return r.status_code, []
        with client.stream("POST", "/v1/responses", json=body, headers=headers) as r:
            types = []
            for line in r.iter_lines():
                if line.startswith("data: "):
                    types.append(orjson.loads(line[6:])["type"])
                    if disconnect and len(types) >= 3:
                        break
            return r.status_code, types


def _books(env: Env, account_id: int) -> list[Any]:
    def settled() -> bool:  # a disconnect is seen by the server a moment after the client left
        env.settle_all()
        return all(r.status != "pending" for r in env.records(account_id))

    wait_for(settled, 15, "every request to settle")
    records = env.records(account_id)
    prices = {m.model_id: m.prices for m in env.call(env.services.catalog.list_models())}
    for r in records:
        assert r.status != "pending" and r.settled_at is not None
        assert r.protocol == "responses"
        assert r.cost_micro == cost_micro(prices[r.model], r.input_tokens, r.output_tokens, r.cache_read_tokens,
                                          r.cache_write_tokens)
        if r.status not in ("ok", "client_disconnect"):
            assert r.cost_micro == 0, (r.status, r.error_type)
    charges = [e for e in env.call(env.services.ledger.entries(account_id, limit=10_000)) if e.kind == "charge"]
    assert sorted(e.request_id for e in charges) == sorted(r.id for r in records if r.cost_micro)
    assert env.call(verify(env.services.db)) == []
    return records


CASES = [
    # (name, script fields, stream, disconnect, record status, the stream's last event)
    ("answer", {}, False, False, "ok", None),
    ("answer_stream", {}, True, False, "ok", "response.completed"),
    ("http_500", {"status": 500}, True, False, "upstream_error", None),
    ("reset_mid_stream", {"reset_mid_stream": 3}, True, False, "upstream_error", "response.failed"),
    ("error_event", {"error_event_mid_stream": 3}, True, False, "upstream_error", "response.failed"),
    ("stall_mid_stream", {"stall_mid_stream": 3, "stall_after": 3}, True, False, "timeout", "response.failed"),
    ("truncated", {"truncated_sse": 3}, True, False, "upstream_error", "response.failed"),
    ("disconnect", {"chunk_delay": 0.05}, True, True, "client_disconnect", None),
]


@pytest.mark.parametrize("lane", ["chat", "messages"])
def test_every_exit_path_settles_once(env_both: Env, lane: str) -> None:
    env = env_both
    env.call(env.services.catalog.update_channel("oai" if lane == "chat" else "ant", idle_timeout=1.0))
    acc = env.account(balance_usd=20)
    key = env.key(acc.id)
    start = env.balance(acc.id)
    for name, fields, stream, disconnect, _status, last in CASES:
        env.upstream.enqueue(Script(text="one two three four five six", usage=USAGE, **fields))
        code, types = _post(env, key, MODELS[lane], stream, disconnect=disconnect)
        assert code == (502 if name == "http_500" else 200), name
        if last is not None:
            assert types[-1] == last and types.count(last) == 1, (name, types[-3:])
            if last == "response.failed":
                assert "response.output_item.done" not in types[-2:]
    records = sorted(_books(env, acc.id), key=lambda r: r.created_at)
    assert [r.status for r in records] == [c[4] for c in CASES]
    ok = records[0]
    assert (ok.input_tokens, ok.output_tokens, ok.cache_read_tokens, ok.cache_write_tokens) == (400, 30, 600, 50)
    prices = env.call(env.services.catalog.list_models())
    p = next(m.prices for m in prices if m.model_id == MODELS[lane])
    assert ok.cost_micro == cost_micro(p, 400, 30, 600, 50)  # cache parts at their own rates
    disconnected = records[-1]
    assert disconnected.usage_source.endswith("_after_disconnect") and disconnected.cost_micro > 0
    assert env.balance(acc.id) == start - sum(r.cost_micro for r in records)


def test_concurrent_responses_with_faults(env_both: Env) -> None:
    env = env_both
    rng = random.Random(14)
    acc = env.account(balance_usd=50)
    env.call(env.services.accounts.set_limits(acc.id, concurrency=0))
    env.gw.gateway.health.failure_threshold = 10**6
    key = env.key(acc.id)
    faults = [None, None, {"status": 500}, {"reset_mid_stream": 2}, {"error_event_mid_stream": 2},
              {"truncated_sse": 2}]
    n = 80
    for _ in range(n):
        env.upstream.enqueue(Script(text="a b c d e f", usage=USAGE, chunk_delay=0.005, **(rng.choice(faults) or {})))

    async def one(client: httpx.AsyncClient, i: int) -> None:
        body = {"model": rng.choice(list(MODELS.values())), "input": f"q{i}", "stream": rng.random() < 0.7}
        headers = {"authorization": f"Bearer {key}"}
        if not body["stream"]:
            await client.post("/v1/responses", json=body, headers=headers)
            return
        async with client.stream("POST", "/v1/responses", json=body, headers=headers) as r:
            if rng.random() < 0.2:
                async for _ in r.aiter_raw():
                    break
                return
            await r.aread()

    async def main() -> None:
        async with httpx.AsyncClient(base_url=env.url, timeout=30) as client:
            await asyncio.gather(*(one(client, i) for i in range(n)))

    asyncio.run(main())
    records = _books(env, acc.id)
    assert len(records) == n
    assert env.balance(acc.id) == 50_000_000 - sum(r.cost_micro for r in records)


def _responses_streams(url: str, key: str, n: int, started: list[int], ends: list[str]) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            async def one(i: int) -> None:
                body = {"model": "m", "stream": True, "input": f"s{i}"}
                last = "none"
                try:
                    async with client.stream("POST", "/v1/responses", json=body,
                                             headers={"authorization": f"Bearer {key}"}) as r:
                        async for line in r.aiter_lines():
                            started.append(i)
                            if line.startswith("data: "):
                                last = orjson.loads(line[6:])["type"]
                except httpx.HTTPError:
                    last = "broken"
                ends.append(last)

            await asyncio.gather(*(one(i) for i in range(n)))

    asyncio.run(main())


@pytest.mark.parametrize("signal_name", ["sigterm", "sigkill"])
def test_responses_streams_across_shutdown(tmp_path: Path, upstream: Any, signal_name: str) -> None:
    """SIGTERM: in-flight Responses streams finish (response.completed) and settle as ok.
    SIGKILL: their pending records are settled at the next start (recovered)."""
    env, key = _prepare_cli_env(tmp_path, upstream)
    words = 60 if signal_name == "sigterm" else 400
    upstream.set_default(Script(text=" ".join(["word"] * words), chunk_delay=0.03))
    gw = GatewayProcess(tmp_path / "data").start()
    started: list[int] = []
    ends: list[str] = []
    t = threading.Thread(target=_responses_streams, args=(gw.url, key, 4, started, ends), daemon=True)
    t.start()
    wait_for(lambda: len(set(started)) == 4, 30, "the streams to start")
    if signal_name == "sigterm":
        assert gw.terminate(60) == 0
        t.join(30)
        assert ends == ["response.completed"] * 4
        rows = _records(tmp_path / "data")
        assert all(r["status"] == "ok" and r["protocol"] == "responses" and r["usage_source"] == "upstream"
                   for r in rows) and len(rows) == 4
    else:
        gw.kill()
        t.join(30)
        assert len([r for r in _records(tmp_path / "data") if r["settled_at"] is None]) == 4
        with GatewayProcess(tmp_path / "data", port=gw.port):
            rows = _records(tmp_path / "data")
        assert all(r["status"] == "recovered" and r["cost_micro"] > 0 for r in rows) and len(rows) == 4
    assert run_cli("db", "verify", env=env).returncode == 0
