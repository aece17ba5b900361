"""Ledger, prices, redemption codes, settlement idempotency and db verify — on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from a2agent.billing.ledger import CodeError, Outcome, PendingRequest
from a2agent.billing.money import MoneyError, Prices, cost_micro, micro_to_usd, usd_to_micro
from a2agent.billing.verify import verify
from a2agent.config import load_settings
from a2agent.services import Services
from a2agent.store.db import upgrade


@pytest.fixture
async def services(tmp_path: Path, db_url: str):
    settings = load_settings(environ={"A2AGENT_DATA_DIR": str(tmp_path), "A2AGENT_DATABASE_URL": db_url})
    await upgrade(settings.database_url)
    svc = Services(settings)
    yield svc
    await svc.close()


def test_usd_parsing_is_exact() -> None:
    assert usd_to_micro("0.000001") == 1
    assert usd_to_micro("12.5") == 12_500_000
    assert usd_to_micro("-3", allow_negative=True) == -3_000_000
    for bad in ("abc", "1e400", "NaN", "0.0000001"):
        with pytest.raises(MoneyError):
            usd_to_micro(bad)
    with pytest.raises(MoneyError):
        usd_to_micro("-1")
    assert micro_to_usd(-1_500_001) == "-1.500001"


def test_cost_rounding_rule() -> None:
    p = Prices(input=1_000_000, output=2_000_000, cache_read=100_000, cache_write=1_250_000)
    assert cost_micro(p, 1_000_000, 0) == 1_000_000
    assert cost_micro(p, 1, 0) == 1  # 1.0 micro-USD exactly
    assert cost_micro(Prices(400_000, 0, 0, 0), 1, 0) == 0  # 0.4 → 0
    assert cost_micro(Prices(500_000, 0, 0, 0), 1, 0) == 1  # 0.5 → 1 (half up)
    # one rounding per request, not per token class
    assert cost_micro(Prices(400_000, 400_000, 0, 0), 1, 1) == 1


@given(st.integers(0, 10**7), st.integers(0, 10**6), st.integers(0, 10**7), st.integers(0, 10**6),
       st.integers(0, 10**8), st.integers(0, 10**8))
def test_cost_is_exact_sum_rounded_once(i: int, o: int, cr: int, cw: int, rin: int, rout: int) -> None:
    from fractions import Fraction

    p = Prices(rin, rout, rin // 10, rin * 5 // 4)
    exact = Fraction(i * p.input + o * p.output + cr * p.cache_read + cw * p.cache_write, 1_000_000)
    assert cost_micro(p, i, o, cr, cw) == int(exact + Fraction(1, 2))


async def test_adjustments_and_ledger_invariant(services: Services) -> None:
    acc = await services.accounts.create("l@example.com", "password123")
    assert await services.ledger.adjust(acc.id, 5_000_000, "top-up") == 5_000_000
    assert await services.ledger.adjust(acc.id, -1_250_000, "fix") == 3_750_000
    with pytest.raises(ValueError):
        await services.ledger.adjust(acc.id, 0)
    entries = await services.ledger.entries(acc.id)
    assert [(e.kind, e.amount_micro, e.balance_after) for e in reversed(entries)] == [
        ("topup", 5_000_000, 5_000_000), ("adjustment", -1_250_000, 3_750_000)]
    assert await verify(services.db) == []


async def test_concurrent_redemption_of_one_code(services: Services) -> None:
    accounts = [await services.accounts.create(f"r{i}@example.com", "password123") for i in range(8)]
    (code,) = await services.ledger.create_codes(3_000_000, 1)

    async def attempt(account_id: int) -> bool:
        try:
            await services.ledger.redeem(account_id, code)
            return True
        except CodeError:
            return False

    results = await asyncio.gather(*(attempt(a.id) for a in accounts for _ in range(3)))
    assert sum(results) == 1
    balances = [(await services.accounts.get(a.id)).balance_micro for a in accounts]
    assert sorted(balances) == [0] * 7 + [3_000_000]
    with pytest.raises(CodeError):
        await services.ledger.redeem(accounts[0].id, code.lower())  # codes are case-insensitive, still used
    assert await verify(services.db) == []


async def _priced(services: Services, prices: Prices) -> Prices:
    """Register model 'm' at these prices; returns them with the price row's id."""
    if not any(c.name == "ch" for c in await services.catalog.list_channels()):
        await services.catalog.add_channel("ch", protocol="openai", base_url="http://127.0.0.1:9/v1")
    await services.catalog.add_model("m", channel="ch", prices=prices)
    entry = {m.model_id: m for m in await services.catalog.list_models()}["m"]
    assert entry.prices.price_id is not None
    return entry.prices


async def _pending(services: Services, account_id: int, key_id: int, rid: str, prices: Prices) -> PendingRequest:
    prices = await _priced(services, prices)
    p = PendingRequest(rid, account_id, key_id, "m", prices)
    await services.ledger.open_request(p, protocol="openai", stream=False, client_ip="127.0.0.1",
                                       input_estimate=100, instance_id="test:1:1")
    return p


async def test_settlement_is_idempotent_and_concurrent_safe(services: Services) -> None:
    acc = await services.accounts.create("s@example.com", "password123")
    await services.ledger.adjust(acc.id, 1_000_000)
    key, _ = await services.accounts.create_key(acc.id)
    prices = Prices(1_000_000, 2_000_000, 100_000, 1_250_000)
    p = await _pending(services, acc.id, key.id, "req_idem", prices)
    outcome = Outcome(status="ok", input_tokens=1000, output_tokens=500, cache_read_tokens=2000,
                      cache_write_tokens=100, usage_source="upstream")
    results = await asyncio.gather(*(services.ledger.settle(p, outcome) for _ in range(5)),
                                   return_exceptions=True)
    costs = [r for r in results if isinstance(r, int)]
    assert costs == [cost_micro(prices, 1000, 500, 2000, 100)] == [2325]
    assert all(r is None or isinstance(r, int) for r in results)
    assert (await services.accounts.get(acc.id)).balance_micro == 1_000_000 - 2325
    assert await verify(services.db) == []


async def test_many_concurrent_settlements_keep_balance_equal_to_ledger(services: Services) -> None:
    acc = await services.accounts.create("c@example.com", "password123")
    await services.ledger.adjust(acc.id, 50_000_000)
    key, _ = await services.accounts.create_key(acc.id)
    prices = Prices(3_000_000, 15_000_000, 300_000, 3_750_000)
    pendings = [await _pending(services, acc.id, key.id, f"req_c{i}", prices) for i in range(60)]
    outcomes = [Outcome(status="ok", input_tokens=100 + i, output_tokens=7 * i, usage_source="upstream")
                for i in range(60)]
    await asyncio.gather(*(services.ledger.settle(p, o) for p, o in zip(pendings, outcomes, strict=False)))
    expected = sum(cost_micro(prices, o.input_tokens, o.output_tokens) for o in outcomes)
    assert (await services.accounts.get(acc.id)).balance_micro == 50_000_000 - expected
    assert await verify(services.db) == []


async def test_verify_reports_tampering(services: Services) -> None:
    from sqlalchemy import update

    from a2agent.store.models import Account, RequestRecord

    acc = await services.accounts.create("t@example.com", "password123")
    await services.ledger.adjust(acc.id, 1_000_000)
    key, _ = await services.accounts.create_key(acc.id)
    p = await _pending(services, acc.id, key.id, "req_t", Prices(1_000_000, 1_000_000, 0, 0))
    await services.ledger.settle(p, Outcome(status="ok", input_tokens=10, output_tokens=10))
    assert await verify(services.db) == []
    async with services.db.write() as s:
        await s.execute(update(Account).where(Account.id == acc.id).values(balance_micro=999))
        await s.execute(update(RequestRecord).where(RequestRecord.id == "req_t").values(output_tokens=11))
    problems = await verify(services.db)
    assert any("t@example.com" in line and "ledger sums" in line for line in problems)
    assert any("req_t" in line and "tokens x price" in line for line in problems)


async def test_recovery_settles_pending_records_of_dead_instances(services: Services) -> None:
    acc = await services.accounts.create("rec@example.com", "password123")
    await services.ledger.adjust(acc.id, 1_000_000)
    key, _ = await services.accounts.create_key(acc.id)
    p = await _pending(services, acc.id, key.id, "req_dead", Prices(1_000_000, 2_000_000, 0, 0))
    assert await services.ledger.recover_pending(["some-other-instance"]) == 0
    assert await services.ledger.recover_pending(["test:1:1"]) == 1
    assert await services.ledger.recover_pending(["test:1:1"]) == 0
    rec = (await services.accounts.get(acc.id)).balance_micro
    assert rec == 1_000_000 - 100  # the input estimate (100 tokens at 1 USD/1M)
    assert await verify(services.db) == []
    _ = p
