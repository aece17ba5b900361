"""The settlement retry queue, on a real SQLite file made unwritable by another connection
holding its write lock (no stand-ins)."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy

from a2agent.billing.ledger import Outcome
from a2agent.billing.money import Prices, cost_micro
from a2agent.billing.settlement import SettlementQueue
from a2agent.billing.verify import verify
from a2agent.config import load_settings
from a2agent.services import Services
from a2agent.store.db import upgrade
from a2agent.store.faults import DATABASE
from a2agent.store.models import RequestRecord
from tests.billing.test_ledger import _pending

PRICES = Prices(1_000_000, 2_000_000, 100_000, 1_250_000)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[Services]:
    settings = load_settings(environ={"A2AGENT_DATA_DIR": str(tmp_path)},
                             overrides={"db_acquire_timeout": 0.2})
    await upgrade(settings.database_url)
    svc = Services(settings)
    yield svc
    await svc.close()


class Tasks:
    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coro: Any, name: str | None = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.tasks.append(task)
        return task


def _lock(services: Services) -> sqlite3.Connection:
    conn = sqlite3.connect(services.settings.database_url.split(":///", 1)[1], isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


async def test_queue_settles_when_the_file_is_writable_again_and_is_bounded(services: Services) -> None:
    acc = await services.accounts.create("q@example.com", "password123")
    await services.ledger.adjust(acc.id, 10_000_000)
    key, _ = await services.accounts.create_key(acc.id)
    pending = [await _pending(services, acc.id, key.id, f"req_q{i}", PRICES) for i in range(4)]
    tasks = Tasks()
    settled: list[str] = []
    queue = SettlementQueue(services.ledger, tasks.spawn, max_size=2,
                            on_settled=lambda p, o, c: settled.append(p.request_id))
    for _ in pending:
        queue.opened()
    outcome = Outcome(status="ok", input_tokens=1000, output_tokens=500, usage_source="upstream")
    locker = _lock(services)
    try:
        for p in pending[:3]:
            await queue.settle(p, outcome)  # the write lock is held: queued, not lost
        assert len(queue) == 2 and queue.dropped == 1  # bounded: the third is left pending
        queue.void(pending[3])  # a refusal's void never pushes out an answered settlement
        await asyncio.wait_for(tasks.tasks[-1], 5)
        assert len(queue) == 2 and queue.dropped == 2
        assert services.deps.is_down(DATABASE)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await asyncio.wait_for(asyncio.gather(*tasks.tasks), 10)
    assert len(queue) == 0 and settled == ["req_q0", "req_q1"]
    assert not services.deps.is_down(DATABASE)
    # what did not fit is settled by the recovery path, from the input estimate, once
    future = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert await services.ledger.recover_pending(None, older_than=future) == 2
    async with services.db.read() as s:
        recs = {r.id: r for r in (await s.scalars(sqlalchemy.select(RequestRecord))).all()}
    assert recs["req_q0"].cost_micro == cost_micro(PRICES, 1000, 500) == recs["req_q1"].cost_micro
    assert recs["req_q2"].status == recs["req_q3"].status == "recovered"
    assert await verify(services.db) == []
    balance = (await services.accounts.get(acc.id)).balance_micro
    assert balance == 10_000_000 - sum(r.cost_micro for r in recs.values())
