"""Our own dependencies' failures: which errors are outages (a 503 and a retry) and which
are bugs; the settings that bound the waits."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy.exc

from a2agent.config import ConfigError, load_settings
from a2agent.store.faults import DATABASE, REDIS, DependencyHealth, DependencyUnavailable, classify


def test_outages_are_recognised_and_bugs_are_not() -> None:
    import asyncpg
    import redis.exceptions

    locked = sqlite3.OperationalError("database is locked")
    assert classify(locked).dependency == DATABASE  # type: ignore[union-attr]
    wrapped = sqlalchemy.exc.OperationalError("SELECT 1", {}, locked)
    assert classify(wrapped).dependency == DATABASE  # type: ignore[union-attr]
    assert classify(asyncpg.exceptions.QueryCanceledError("statement timeout")) is not None
    assert classify(asyncpg.exceptions.CannotConnectNowError("starting up")) is not None
    assert classify(redis.exceptions.ConnectionError("gone")).dependency == REDIS  # type: ignore[union-attr]
    assert classify(ConnectionRefusedError(), DATABASE).dependency == DATABASE  # type: ignore[union-attr]
    # bugs stay bugs: they must surface as errors, not as "retry later"
    assert classify(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
    assert classify(asyncpg.exceptions.UniqueViolationError("duplicate key")) is None
    assert classify(ValueError("bad")) is None
    assert classify(ConnectionRefusedError()) is None  # no hint: not ours to guess
    err = DependencyUnavailable(DATABASE, "x")
    assert classify(RuntimeError("outer")) is None and classify(err) is err


def test_health_changes_state_once_per_outage() -> None:
    deps = DependencyHealth()
    seen: list[str] = []
    deps.on_error = seen.append
    for _ in range(3):
        deps.failed(DependencyUnavailable(DATABASE, "ConnectionRefusedError"))
    assert deps.is_down(DATABASE) and not deps.is_down(REDIS)
    assert deps.errors[DATABASE] == 3 and seen == [DATABASE] * 3
    err = DependencyUnavailable(DATABASE, "x")
    deps.failed(err)
    deps.failed(err)  # the same error seen at two layers counts once
    assert deps.errors[DATABASE] == 4
    deps.ok(DATABASE)
    assert not deps.is_down(DATABASE)


@pytest.mark.parametrize(("name", "value"), [
    ("DB_ACQUIRE_TIMEOUT", "0"), ("DB_ACQUIRE_TIMEOUT", "soon"),
    ("DB_STATEMENT_TIMEOUT", "-1"), ("SETTLEMENT_QUEUE_MAX", "0"),
])
def test_bad_bounds_are_refused_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=f"A2AGENT_{name}"):
        load_settings(environ={f"A2AGENT_{name}": value}, materialize=False)


def test_bounds_have_defaults_and_zero_statement_timeout_means_none() -> None:
    s = load_settings(environ={"A2AGENT_DB_STATEMENT_TIMEOUT": "0"}, materialize=False)
    assert (s.db_acquire_timeout, s.db_statement_timeout, s.settlement_queue_max) == (5.0, 0.0, 10000)
