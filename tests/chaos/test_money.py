"""Money through database faults, each fault made exactly where it matters:

* a request answered while the database is away is settled when it is back (retry queue);
* the COMMIT of a settlement reaches the server but its answer is lost with the connection:
  the retry finds the request settled and charges nothing more;
* the COMMIT of a pending record is lost the same way: the caller got a 503, the upstream was
  never called, and the record that did commit is closed at no cost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from a2agent.billing.money import cost_micro
from tests.chaos.conftest import PRICES, Chaos, chaos_env
from tests.chaos.harness import check_money
from tests.support.private_deps import CommitDropper, PrivatePostgres
from tests.support.script import Script
from tests.support.upstream import ScriptedUpstream


def _until(predicate: Any, timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _post(chaos: Chaos, out: list[httpx.Response], stream: bool = False) -> threading.Thread:
    def run() -> None:
        body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi there"}]}
        if stream:
            body.update(stream=True, stream_options={"include_usage": True})
        out.append(httpx.post(chaos.url + "/v1/chat/completions", json=body, timeout=30,
                              headers={"authorization": f"Bearer {chaos.key}"}))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _stream_usage(text: str) -> tuple[int, int]:
    import json

    for line in text.splitlines():
        if line.startswith("data: {") and '"usage"' in line:
            u = json.loads(line[6:]).get("usage")
            if u:
                return u["prompt_tokens"], u["completion_tokens"]
    raise AssertionError("no usage chunk in the stream")


@pytest.fixture
def chaos(tmp_path: Path, upstream: ScriptedUpstream, private_pg: PrivatePostgres) -> Iterator[Chaos]:
    yield from chaos_env(tmp_path, upstream, private_pg.url)


def test_answered_during_outage_is_settled_when_database_returns(
        chaos: Chaos, private_pg: PrivatePostgres, upstream: ScriptedUpstream) -> None:
    upstream.enqueue(Script(stall_before_headers=1.5, repeat=3))
    out: list[httpx.Response] = []
    threads = [_post(chaos, out), _post(chaos, out), _post(chaos, out, stream=True)]
    upstream.wait_for_requests(3, timeout=10)  # pending records written, upstream answering
    private_pg.stop()
    for t in threads:
        t.join(30)
    assert [r.status_code for r in out] == [200, 200, 200]  # a started answer never notices
    _until(lambda: chaos.metric("a2agent_settlement_retry_queue") == 3, what="3 queued settlements")
    assert chaos.metric("a2agent_unsettled_requests") == 3
    private_pg.start()
    chaos.env.gw.wait_idle(20)
    assert chaos.metric("a2agent_settlement_retry_queue") == 0
    assert chaos.metric("a2agent_unsettled_requests") == 0
    expected = 0
    for r in out:
        if r.headers["content-type"].startswith("text/event-stream"):
            i, o = _stream_usage(r.text)
        else:
            u = r.json()["usage"]
            i, o = u["prompt_tokens"], u["completion_tokens"]
        expected += cost_micro(PRICES, i, o, 0, 0)
    assert chaos.start_balance - chaos.env.balance(chaos.account_id) == expected
    from a2agent.billing.verify import verify

    assert chaos.env.call(verify(chaos.env.services.db)) == []


@pytest.fixture
def dropper(private_pg: PrivatePostgres) -> Iterator[CommitDropper]:
    proxy = CommitDropper(private_pg.port)
    yield proxy
    proxy.close()


@pytest.fixture
def proxied(tmp_path: Path, upstream: ScriptedUpstream, private_pg: PrivatePostgres,
            dropper: CommitDropper) -> Iterator[Chaos]:
    yield from chaos_env(tmp_path, upstream, f"postgresql://postgres@127.0.0.1:{dropper.port}/a2a")


def _charges(chaos: Chaos, request_id: str) -> list[int]:
    from sqlalchemy import select

    from a2agent.store.models import LedgerEntry

    async def q() -> list[int]:
        async with chaos.env.services.db.read() as s:
            return list(await s.scalars(select(LedgerEntry.amount_micro)
                                        .where(LedgerEntry.request_id == request_id)))

    return chaos.env.call(q())


def test_settlement_commit_answer_lost_charges_once(
        proxied: Chaos, dropper: CommitDropper, upstream: ScriptedUpstream) -> None:
    chaos = proxied
    upstream.enqueue(Script(stall_before_headers=1.0))
    out: list[httpx.Response] = []
    t = _post(chaos, out)
    upstream.wait_for_requests(1, timeout=10)  # its pending record is committed already
    dropper.armed = True  # the next hot-path COMMIT is the settlement's
    t.join(30)
    assert out[0].status_code == 200
    _until(lambda: dropper.dropped == 1, what="the settlement's COMMIT to be cut")
    chaos.env.gw.wait_idle(20)
    u = out[0].json()["usage"]
    cost = cost_micro(PRICES, u["prompt_tokens"], u["completion_tokens"], 0, 0)
    assert _charges(chaos, out[0].headers["x-request-id"]) == [-cost]  # committed once, not twice
    assert chaos.metric("a2agent_dependency_errors_total", '{dependency="database"}') >= 1
    check_money(chaos.env, chaos.account_id, chaos.start_balance,
                [_shot(out[0], u["prompt_tokens"], u["completion_tokens"])], PRICES)


def test_pending_commit_answer_lost_is_refused_and_closed_at_no_cost(
        proxied: Chaos, dropper: CommitDropper, upstream: ScriptedUpstream) -> None:
    chaos = proxied
    dropper.armed = True  # the next hot-path COMMIT is this request's pending record
    r = httpx.post(chaos.url + "/v1/messages", timeout=30,
                   headers={"x-api-key": chaos.key, "anthropic-version": "2023-06-01"},
                   json={"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 503 and r.json()["error"]["type"] == "overloaded_error"
    assert int(r.headers["retry-after"]) >= 1
    assert dropper.dropped == 1
    assert upstream.requests == []  # refused before any upstream call
    chaos.env.gw.wait_idle(20)
    from a2agent.store.models import RequestRecord

    async def record() -> Any:
        async with chaos.env.services.db.read() as s:
            return await s.get(RequestRecord, r.headers["x-request-id"])

    rec = chaos.env.call(record())
    assert rec is not None, "the pending record's COMMIT did reach the server"
    assert (rec.status, rec.error_type, rec.cost_micro) == ("error", "database_unavailable", 0)
    assert rec.settled_at is not None
    assert _charges(chaos, rec.id) == []
    check_money(chaos.env, chaos.account_id, chaos.start_balance, [], PRICES)


def _shot(r: httpx.Response, i: int, o: int) -> Any:
    from tests.chaos.harness import Shot

    return Shot(0, 0, "openai", r.status_code, r.headers["x-request-id"], i, o)
