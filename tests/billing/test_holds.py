"""Balance holds at the database level (reserve, then settle; issue 13), on SQLite and
PostgreSQL: a hold is taken only while the balance less other holds covers it, atomically under
concurrency; settlement and crash recovery release it; db verify checks holds and stale pending
records."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import update

from a2agent.billing.ledger import Outcome, PendingRequest
from a2agent.billing.money import Prices
from a2agent.billing.reservation import InsufficientBalance
from a2agent.billing.verify import verify
from a2agent.config import load_settings
from a2agent.services import Services
from a2agent.store.db import upgrade
from a2agent.store.models import RequestRecord, utcnow
from tests.billing.test_ledger import _priced

PRICES = Prices(1_000_000, 2_000_000, 0, 0)


@pytest.fixture
async def services(tmp_path: Path, db_url: str):
    settings = load_settings(environ={"A2AGENT_DATA_DIR": str(tmp_path), "A2AGENT_DATABASE_URL": db_url})
    await upgrade(settings.database_url)
    svc = Services(settings)
    yield svc
    await svc.close()


async def _open(services: Services, acc_id: int, key_id: int, rid: str, hold: int) -> PendingRequest:
    p = PendingRequest(rid, acc_id, key_id, "m", await _priced(services, PRICES))
    await services.ledger.open_request(p, protocol="openai", stream=False, client_ip=None,
                                       input_estimate=10, instance_id="test:1:1", reserved=hold)
    return p


async def test_concurrent_holds_never_exceed_the_balance(services: Services) -> None:
    acc = await services.accounts.create("h@example.com", None)
    await services.ledger.adjust(acc.id, 10_000)
    key, _ = await services.accounts.create_key(acc.id)
    await _priced(services, PRICES)
    results = await asyncio.gather(*(_open(services, acc.id, key.id, f"req_h{i}", 700) for i in range(50)),
                                   return_exceptions=True)
    admitted = [r for r in results if isinstance(r, PendingRequest)]
    refused = [r for r in results if isinstance(r, InsufficientBalance)]
    assert len(admitted) == 14 and len(refused) == 36  # 14 x 700 <= 10,000 < 15 x 700
    assert all(0 <= r.available < 700 for r in refused)
    assert (await services.accounts.get(acc.id)).reserved_micro == 14 * 700
    assert await verify(services.db) == []
    # settle half (charged their real cost, hold released), recover the rest (as after a crash)
    for p in admitted[:7]:
        assert await services.ledger.settle(p, Outcome(status="ok", input_tokens=100, output_tokens=50)) == 200
    assert (await services.accounts.get(acc.id)).reserved_micro == 7 * 700
    assert await services.ledger.recover_pending(["test:1:1"]) == 7
    acc_after = await services.accounts.get(acc.id)
    assert acc_after.reserved_micro == 0
    assert acc_after.balance_micro == 10_000 - 7 * 200 - 7 * 10  # recovered: the input estimate
    assert await verify(services.db) == []


async def test_verify_reports_stale_pending_records_and_wrong_holds(services: Services) -> None:
    acc = await services.accounts.create("v@example.com", None)
    await services.ledger.adjust(acc.id, 10_000)
    key, _ = await services.accounts.create_key(acc.id)
    await _open(services, acc.id, key.id, "req_stale", 500)
    assert await verify(services.db) == []
    async with services.db.write() as s:
        await s.execute(update(RequestRecord).where(RequestRecord.id == "req_stale")
                        .values(created_at=utcnow() - dt.timedelta(hours=2)))
    problems = await verify(services.db)
    assert len(problems) == 1 and "req_stale" in problems[0] and "pending" in problems[0]
    async with services.db.write() as s:
        from a2agent.store.models import Account

        await s.execute(update(Account).where(Account.id == acc.id).values(reserved_micro=123))
    problems = await verify(services.db)
    assert any("held" in p for p in problems), problems


@pytest.mark.parametrize("hold", [0])
async def test_a_zero_hold_needs_no_balance(services: Services, hold: int) -> None:
    acc = await services.accounts.create("z@example.com", None)
    key, _ = await services.accounts.create_key(acc.id)
    p = await _open(services, acc.id, key.id, "req_zero", hold)
    assert await services.ledger.settle(p, Outcome(status="ok")) == 0
    assert await verify(services.db) == []


async def test_holds_from_two_instances_share_one_balance(services: Services, tmp_path: Path,
                                                          db_url: str) -> None:
    """Two processes' writers (two Services on one database) race for the same balance."""
    other = Services(load_settings(environ={"A2AGENT_DATA_DIR": str(tmp_path),
                                            "A2AGENT_DATABASE_URL": db_url}))
    try:
        acc = await services.accounts.create("two@example.com", None)
        await services.ledger.adjust(acc.id, 10_000)
        key, _ = await services.accounts.create_key(acc.id)
        await _priced(services, PRICES)
        tries = [_open(svc, acc.id, key.id, f"req_two{i}", 700)
                 for i in range(60) for svc in ((services, other)[i % 2],)]
        results = await asyncio.gather(*tries, return_exceptions=True)
        assert sum(isinstance(r, PendingRequest) for r in results) == 14
        assert all(isinstance(r, (PendingRequest, InsufficientBalance)) for r in results), results
        assert (await services.accounts.get(acc.id)).reserved_micro == 14 * 700
        assert await verify(services.db) == []
    finally:
        await other.close()


async def test_recovery_charges_the_output_noted_by_a_stream(services: Services) -> None:
    acc = await services.accounts.create("cp@example.com", None)
    await services.ledger.adjust(acc.id, 10_000)
    key, _ = await services.accounts.create_key(acc.id)
    p = await _open(services, acc.id, key.id, "req_cp", 1_000)
    await services.ledger.note_progress("req_cp", 40)
    await services.ledger.note_progress("req_cp", 90)  # the latest checkpoint wins
    assert await services.ledger.recover_pending(["test:1:1"]) == 1
    await services.ledger.note_progress("req_cp", 500)  # too late: settled records do not move
    acc_after = await services.accounts.get(acc.id)
    assert acc_after.balance_micro == 10_000 - (10 * 1 + 90 * 2) and acc_after.reserved_micro == 0
    assert p.request_id == "req_cp"
    assert await verify(services.db) == []
