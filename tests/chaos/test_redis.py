"""Redis stopped and restarted under load: admission falls back to per-instance counting at
once (no request waits on the dead Redis), /readyz stays ready and says "degraded", one log
line says so; when Redis is back the shared counters are used again; money is unaffected."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.chaos.conftest import PRICES, Chaos, chaos_env
from tests.chaos.harness import (
    OUTAGE_SECONDS,
    Load,
    ReadyWatch,
    assert_clear_answers,
    check_money,
    report,
)
from tests.support.private_deps import PrivateRedis
from tests.support.upstream import ScriptedUpstream

CONCURRENCY = 2  # per account, with 6 clients: some 429s whether Redis is up or not


@pytest.fixture
def chaos(tmp_path: Path, upstream: ScriptedUpstream, private_redis: PrivateRedis,
          db_url: str) -> Iterator[Chaos]:
    """On SQLite and on PostgreSQL (the machine's, in a fresh database: only Redis fails)."""
    for c in chaos_env(tmp_path, upstream, db_url, redis_url=private_redis.url):
        c.env.call(c.env.services.accounts.set_limits(c.account_id, rpm=100_000,
                                                      concurrency=CONCURRENCY))
        yield c


def test_redis_stopped_and_restarted_under_load(chaos: Chaos, private_redis: PrivateRedis,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    probe = redis.Redis(port=private_redis.port)
    with ReadyWatch(chaos.url) as ready, Load(chaos.url, chaos.key, "m") as load:
        load.wait_for(40)
        assert probe.keys("a2a*"), "admission uses Redis while it is up"
        t_down = time.monotonic()
        private_redis.stop()
        degraded_in = ready.first(t_down, 200, redis="degraded")
        time.sleep(OUTAGE_SECONDS)
        assert chaos.metric("a2agent_dependency_up", '{dependency="redis"}') == 0
        private_redis.start()
        t_up = time.monotonic()
        back_in = ready.first(t_up, 200, redis="ok")
        deadline = time.monotonic() + 5
        while not probe.keys("a2a*"):  # the restarted Redis is empty: used again?
            assert time.monotonic() < deadline, "admission did not go back to Redis"
            time.sleep(0.02)
        shared_again_in = time.monotonic() - t_up
        n = len(load.shots)
        load.wait_for(n + 40)
    assert not load.failures, load.failures[:5]
    assert_clear_answers(load.shots, allowed=(200, 429), max_latency=3.0)
    during = [s for s in load.shots if t_down < s.t0 < t_up]
    assert any(s.status == 200 for s in during), "degraded mode still serves"
    assert any(s.status == 429 for s in during), "concurrency is still bounded per instance"
    assert all(int(s.retry_after or 0) >= 1 for s in load.shots if s.status == 429)
    assert degraded_in < 1.0 and back_in < 1.5, (degraded_in, back_in)
    assert all(st == 200 for t, st, _ in ready.samples), "Redis never makes the gateway unready"
    money = check_money(chaos.env, chaos.account_id, chaos.start_balance, load.shots, PRICES)
    assert chaos.metric("a2agent_dependency_up", '{dependency="redis"}') == 1
    # one line when it went, one when it came back; not one per request
    states = [r.getMessage() for r in caplog.records if r.name == "a2agent.dependencies"
              and r.getMessage().startswith("redis")]
    assert len(states) == 2 and "unavailable" in states[0] and "back" in states[1], states
    assert not [r for r in caplog.records if r.name == "a2agent.admission"]
    report(f"redis stopped and restarted ({chaos.env.services.settings.database_url.split('+')[0]})",
           load.shots, (t_down, t_up),
           degraded_reported_after_s=degraded_in, ok_reported_after_s=back_in,
           shared_limits_again_after_s=shared_again_in, charged_micro=money.charged,
           expected_micro=money.expected, verify="clean", pending_left=0)
