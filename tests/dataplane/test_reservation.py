"""Reserve, then settle (SPEC §6, issue 13): admission holds a request's maximum cost against
the balance atomically in the database, refuses with 403 insufficient_balance saying what the
balance affords, and settlement charges the real cost and releases the hold. On SQLite and
PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import re
from typing import Any

import httpx

from a2agent.billing.verify import verify
from tests.dataplane.conftest import MSGS, Tenant, assert_error
from tests.support import Script

CENT = 10_000  # micro-USD


def broke_tenant(env: Any, micro: int) -> Tenant:
    t = Tenant(env, balance_usd=0)
    if micro:
        env.call(env.services.ledger.adjust(t.id, micro, note="test"))
    return t


def reserved(env: Any, t: Tenant) -> int:
    return env.call(env.services.accounts.get(t.id)).reserved_micro


def books_clean(env: Any, t: Tenant) -> None:
    env.settle_all()
    assert reserved(env, t) == 0
    assert env.call(verify(env.services.db)) == []


def test_a_4mb_prompt_on_one_cent_is_refused_with_what_the_balance_affords(denv_both):
    t = broke_tenant(denv_both, CENT)
    try:
        prompt = "word " * (4 * 1024 * 1024 // 5)
        r = httpx.post(denv_both.url + "/v1/chat/completions", timeout=60,
                       headers={"authorization": f"Bearer {t.key}"},
                       json={"model": "gpt-test", "messages": [{"role": "user", "content": prompt}]})
        err = assert_error(r, 403, "openai", code="insufficient_balance")
        print("\n4 MB prompt on $0.01:", err["message"])
        assert re.search(r"may cost up to \$1\.\d\d", err["message"]) and "does not cover" in err["message"]
        assert denv_both.upstream.requests == []
        assert t.balance() == CENT and t.records() == []
        books_clean(denv_both, t)
    finally:
        t.close()


def test_refusal_names_the_max_tokens_the_balance_covers(denv_both):
    env = denv_both
    t = broke_tenant(env, 10 * CENT)  # $0.10; claude-test output is $2 per 1M tokens
    try:
        body = {"model": "claude-test", "max_tokens": 128_000, "messages": MSGS}
        r = httpx.post(env.url + "/v1/messages", json=body, headers={"x-api-key": t.key}, timeout=30)
        err = assert_error(r, 403, "anthropic", err_type="permission_error")
        assert "may cost up to $0.26" in err["message"], err["message"]
        covers = int(re.search(r"max_tokens ≤ ([\d,]+)", err["message"])[1].replace(",", ""))
        assert 49_000 < covers < 50_000
        # the figure is right: exactly that cap is admitted (and costs what the answer used)
        r = httpx.post(env.url + "/v1/messages", json={**body, "max_tokens": covers},
                       headers={"x-api-key": t.key}, timeout=30)
        assert r.status_code == 200, r.text
        rec = t.only_record()
        assert t.balance() == 10 * CENT - rec.cost_micro
        books_clean(env, t)
    finally:
        t.close()


def test_models_priced_at_zero_are_callable_at_zero_balance(denv):
    denv.model("free-test", "oai", input_usd=0, output_usd=0, upstream_model="gpt-4o-mini")
    t = broke_tenant(denv, 0)
    try:
        r = t.oa.chat.completions.create(model="free-test", messages=MSGS)
        assert r.choices[0].message.content
        assert t.only_record().cost_micro == 0 and t.balance() == 0
        r = httpx.post(denv.url + "/v1/chat/completions", headers={"authorization": f"Bearer {t.key}"},
                       json={"model": "gpt-test", "messages": MSGS}, timeout=30)
        assert_error(r, 403, "openai", code="insufficient_balance")
        books_clean(denv, t)
    finally:
        t.close()


async def _mixed(env: Any, key: str, n: int, rng: random.Random) -> list[int]:
    async with httpx.AsyncClient(base_url=env.url, timeout=60,
                                 limits=httpx.Limits(max_connections=n)) as client:
        async def one(i: int) -> int:
            protocol, stream = rng.choice(["openai", "anthropic"]), rng.random() < 0.5
            model = rng.choice(["gpt-test", "claude-test"])
            cap = rng.choice([16, 64, 256, None])
            msgs = [{"role": "user", "content": f"question {i} " + "pad " * rng.randrange(0, 3000)}]
            if protocol == "openai":
                path, body = "/v1/chat/completions", {"model": model, "messages": msgs, "stream": stream}
                if cap:
                    body["max_tokens"] = cap
            else:
                path = "/v1/messages"
                body = {"model": model, "messages": msgs, "stream": stream, "max_tokens": cap or 4096}
            async with client.stream("POST", path, json=body, headers={"authorization": f"Bearer {key}"}) as r:
                await r.aread()
                return r.status_code

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_200_concurrent_mixed_requests_on_one_cent_never_go_below_zero(denv_both):
    env = denv_both
    env.upstream.set_default(Script(text="one two three four five six seven eight nine ten",
                                    chunk_delay=0.01))
    t = broke_tenant(env, CENT)
    try:
        env.call(env.services.accounts.set_limits(t.id, concurrency=0))  # the hold alone bounds it
        rng, statuses = random.Random(13), []
        for _ in range(40):  # waves of 200 concurrent requests until the balance is spent
            wave = asyncio.run(_mixed(env, t.key, 200, rng))
            statuses += wave
            env.settle_all()
            if 200 not in wave:
                break
        assert set(statuses) <= {200, 403}, statuses
        assert 200 not in wave  # spent: even the smallest request is refused now
        records = t.records()
        assert len(records) == statuses.count(200)  # refused requests leave no record
        balance = t.balance()
        print(f"\n200 concurrent on $0.01, {len(statuses) // 200} waves: {statuses.count(200)} answered, "
              f"{statuses.count(403)} refused, balance after {balance} micro-USD")
        assert balance >= 0, balance
        assert balance == CENT - sum(r.cost_micro for r in records)
        books_clean(env, t)
    finally:
        t.close()


def test_holds_are_released_on_every_outcome(denv):
    t = Tenant(denv)
    try:
        denv.upstream.enqueue(Script(status=500))
        denv.upstream.enqueue(Script(reset_mid_stream=2))
        denv.upstream.enqueue(Script())
        for stream in (False, True, False):
            httpx.post(denv.url + "/v1/chat/completions", headers={"authorization": f"Bearer {t.key}"},
                       json={"model": "gpt-test", "messages": MSGS, "stream": stream}, timeout=30)
        assert [r.status for r in sorted(t.records(), key=lambda r: r.created_at)] == [
            "upstream_error", "upstream_error", "ok"]
        books_clean(denv, t)
    finally:
        t.close()
