"""Our own dependencies failing: the one place that recognises a database or Redis outage.

Driver errors (SQLAlchemy, asyncpg, sqlite3, redis-py, sockets, timeouts) are turned into
one typed error, :class:`DependencyUnavailable`, naming what is away. The API edge renders it
as a 503 in the caller's protocol; billing queues settlements that meet it. Bugs (an
integrity error, a typo in SQL) are not outages and are never classified as one.

:class:`DependencyHealth` keeps each dependency's state and logs one line when it goes down
and one when it is back, instead of one traceback per request.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

log = logging.getLogger("a2agent.dependencies")

DATABASE = "database"
REDIS = "redis"

RETRY_AFTER_SECONDS = 2

_WHAT = {DATABASE: "the gateway's database", REDIS: "the gateway's Redis"}


class DependencyUnavailable(Exception):
    """A dependency of ours (``database`` or ``redis``) cannot serve right now.

    ``maybe_written``: a write may have committed although its caller saw this error (the
    connection was lost during the transaction), so the caller must treat the outcome as
    unknown; False when nothing reached the database (no connection, lock not obtained,
    transaction rolled back locally)."""

    def __init__(self, dependency: str, reason: str, *, maybe_written: bool = True) -> None:
        super().__init__(f"{dependency} unavailable: {reason}")
        self.dependency = dependency
        self.reason = reason  # the exception class, for logs; never shown to callers
        self.maybe_written = maybe_written
        self.retry_after = RETRY_AFTER_SECONDS
        self.counted = False  # DependencyHealth.failed saw it already

    @property
    def what(self) -> str:
        return _WHAT.get(self.dependency, self.dependency)


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception, the driver error SQLAlchemy wraps, and its causes."""
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is seen for seen in out) or len(out) > 8:
            continue
        out.append(e)
        todo.extend([getattr(e, "orig", None), e.__cause__, e.__context__])
    return out


def _is_database_error(e: BaseException) -> bool:
    import sqlalchemy.exc as sa

    if isinstance(e, sa.TimeoutError):  # pool: no connection within pool_timeout
        return True
    if isinstance(e, sa.DBAPIError) and e.connection_invalidated:
        return True
    if isinstance(e, sqlite3.OperationalError):  # locked, busy, disk full, I/O, cannot open
        return True
    try:
        import asyncpg
    except ImportError:  # pragma: no cover - asyncpg is a dependency
        return False
    pg = asyncpg.exceptions
    return isinstance(e, (
        pg.PostgresConnectionError,  # class 08
        pg.OperatorInterventionError,  # class 57: admin shutdown, cannot connect now, query
        # canceled by statement_timeout
        pg.InsufficientResourcesError,  # class 53: disk full, too many connections
        pg.TransactionRollbackError,  # class 40: deadlock, serialization failure
        pg.LockNotAvailableError,
        pg.ReadOnlySQLTransactionError,  # a failover left us on a read-only replica
        pg.InterfaceError,  # connection closed / does not exist
        pg.InternalClientError,  # a connection left half-way by a failure mid-transaction
    )) and not isinstance(e, pg.InterfaceWarning)


def _is_redis_error(e: BaseException) -> bool:
    try:
        import redis.exceptions as rx
    except ImportError:  # pragma: no cover - redis is a dependency
        return False
    return isinstance(e, (rx.ConnectionError, rx.TimeoutError, rx.BusyLoadingError))


def classify(exc: BaseException, dependency: str | None = None) -> DependencyUnavailable | None:
    """``exc`` as a dependency outage, or None when it is something else (a bug).

    ``dependency``: the caller knows which dependency it was talking to, so plain socket
    errors and timeouts count as that dependency's outage too."""
    for e in _chain(exc):
        if isinstance(e, DependencyUnavailable):
            return e
    for e in _chain(exc):
        if _is_redis_error(e):
            return DependencyUnavailable(REDIS, type(e).__name__)
        if _is_database_error(e):
            return DependencyUnavailable(DATABASE, type(e).__name__)
        if dependency is not None and isinstance(e, (OSError, TimeoutError)):
            return DependencyUnavailable(dependency, type(e).__name__)
    return None


class DependencyHealth:
    """Up or down per dependency, as the last operation on it found; one log line per change.

    ``on_error``: called for every failure (metrics count them)."""

    def __init__(self) -> None:
        self._down: dict[str, tuple[float, str]] = {}
        self.errors: dict[str, int] = {DATABASE: 0, REDIS: 0}
        self.on_error: Callable[[str], None] | None = None

    def failed(self, err: DependencyUnavailable) -> DependencyUnavailable:
        """Count the failure (once per error object) and note the state change."""
        if err.counted:
            return err
        err.counted = True
        dep = err.dependency
        self.errors[dep] = self.errors.get(dep, 0) + 1
        if self.on_error is not None:
            self.on_error(dep)
        if dep not in self._down:
            self._down[dep] = (time.monotonic(), err.reason)
            if dep == REDIS:
                log.warning("redis unavailable (%s): rate limits and concurrency are counted per "
                            "instance until it is back", err.reason,
                            extra={"dependency": dep, "state": "down"})
            else:
                log.warning("%s unavailable (%s): requests are answered 503 until it is back",
                            dep, err.reason, extra={"dependency": dep, "state": "down"})
        return err

    def ok(self, dependency: str) -> None:
        if dependency in self._down:  # a dict lookup: cheap enough for every operation
            since, _ = self._down.pop(dependency, (time.monotonic(), ""))
            log.warning("%s is back after %.1f s", dependency, time.monotonic() - since,
                        extra={"dependency": dependency, "state": "up"})

    def is_down(self, dependency: str) -> bool:
        return dependency in self._down

    def down_for(self, dependency: str) -> float:
        since = self._down.get(dependency)
        return 0.0 if since is None else time.monotonic() - since[0]
