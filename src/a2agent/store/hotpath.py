"""The data plane's three database operations, on the drivers directly.

Per request the gateway reads the key (fresh, never cached), writes a pending record at
admission and settles the request at the end. Through the SQLAlchemy ORM these cost about
8 ms of CPU per request (statement building, greenlet and thread hops); here they are fixed
SQL on the driver: one thread hop per key lookup on SQLite, a prepared statement on
PostgreSQL, and writes grouped into one transaction per batch by a single writer task
(group commit), each operation inside its own savepoint so one failure affects only its
caller. Everything else (admin, console, verification) stays on SQLAlchemy.

This module is the only place with hand-written SQL; it must match ``store/models.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import logging
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, TypeVar

from a2agent.store.faults import DATABASE, DependencyHealth, classify

log = logging.getLogger("a2agent.store")
T = TypeVar("T")

LOOKUP_SQL = (
    "SELECT k.id, k.name, k.digest, a.id, a.suspended, a.balance_micro, a.rpm_limit, a.tpm_limit, "
    "a.max_concurrency, (SELECT version FROM state_versions WHERE name = 'catalog'), "
    "a.spend_limit_micro "
    "FROM api_keys k JOIN accounts a ON a.id = k.account_id "
    "WHERE k.digest = :digest AND k.deleted_at IS NULL"
)
PENDING_SQL = (
    "INSERT INTO request_records (id, account_id, key_id, model, protocol, stream, status, client_ip, "
    "input_estimate, price_id, created_at, instance_id, input_tokens, output_tokens, cache_read_tokens, "
    "cache_write_tokens, cost_micro, recovered, reserved_micro) VALUES (:id, :account_id, :key_id, :model, "
    ":protocol, :stream, 'pending', :client_ip, :input_estimate, :price_id, :created_at, :instance_id, "
    "0, 0, 0, 0, 0, :false, :reserved)"
)
# the output relayed so far by a stream still in flight (what crash recovery charges)
PROGRESS_SQL = "UPDATE request_records SET output_tokens = :output_tokens WHERE id = :id AND settled_at IS NULL"
# a hold on the balance for one request (billing/reservation.py): taken only when what is left
# after the other holds covers it, in the same transaction as the pending record
RESERVE_SQL = (
    "UPDATE accounts SET reserved_micro = reserved_micro + :reserved "
    "WHERE id = :account_id AND balance_micro - reserved_micro >= :reserved RETURNING id"
)
AVAILABLE_SQL = "SELECT balance_micro - reserved_micro FROM accounts WHERE id = :account_id"
SETTLE_RECORD_SQL = (
    "UPDATE request_records SET status = :status, http_status = :http_status, error_type = :error_type, "
    "channel = :channel, upstream_protocol = :upstream_protocol, input_tokens = :input_tokens, "
    "output_tokens = :output_tokens, cache_read_tokens = :cache_read_tokens, "
    "cache_write_tokens = :cache_write_tokens, cost_micro = :cost_micro, price_id = :price_id, "
    "usage_source = :usage_source, attempts = :attempts, latency_ms = :latency_ms, ttfb_ms = :ttfb_ms, "
    "settled_at = :settled_at, recovered = :recovered WHERE id = :id AND settled_at IS NULL "
    "RETURNING reserved_micro"
)
# the charge and the release of the request's hold, in one statement
CHARGE_SQL = (
    "UPDATE accounts SET balance_micro = balance_micro - :cost, reserved_micro = reserved_micro - :reserved "
    "WHERE id = :account_id RETURNING balance_micro"
)
LEDGER_SQL = (
    "INSERT INTO ledger_entries (account_id, kind, amount_micro, balance_after, request_id, note, created_at) "
    "VALUES (:account_id, 'charge', :amount, :balance_after, :request_id, NULL, :created_at)"
)
ROLLUP_SQL = (
    "INSERT INTO daily_usage (day, account_id, key_id, model, requests, errors, input_tokens, output_tokens, "
    "cache_read_tokens, cache_write_tokens, cost_micro) VALUES (:day, :account_id, :key_id, :model, 1, "
    ":errors, :input_tokens, :output_tokens, :cache_read_tokens, :cache_write_tokens, :cost_micro) "
    "ON CONFLICT (day, account_id, key_id, model) DO UPDATE SET "
    "requests = daily_usage.requests + 1, errors = daily_usage.errors + excluded.errors, "
    "input_tokens = daily_usage.input_tokens + excluded.input_tokens, "
    "output_tokens = daily_usage.output_tokens + excluded.output_tokens, "
    "cache_read_tokens = daily_usage.cache_read_tokens + excluded.cache_read_tokens, "
    "cache_write_tokens = daily_usage.cache_write_tokens + excluded.cache_write_tokens, "
    "cost_micro = daily_usage.cost_micro + excluded.cost_micro"
)
MONTH_SPEND_SQL = (  # only for accounts with a monthly spend limit (billing.spend)
    "SELECT COALESCE(SUM(cost_micro), 0) FROM daily_usage WHERE account_id = :account_id "
    "AND day >= :since"
)
TOUCH_KEY_SQL = "UPDATE api_keys SET last_used_at = :now WHERE id = :key_id"

MAX_BATCH = 256


class HoldRefused(Exception):
    """The account's balance less its other holds cannot cover this request's hold."""

    def __init__(self, available: int) -> None:
        super().__init__(f"available {available}")
        self.available = available


@dataclass(frozen=True)
class Settlement:
    """Everything one settlement writes (token counts normalised, cost computed)."""

    request_id: str
    account_id: int
    key_id: int
    model: str
    values: dict[str, Any]  # the request record's columns
    cost: int
    ok: bool
    now: dt.datetime


def _sqlite_time(value: dt.datetime) -> str:
    """SQLAlchemy's SQLite DATETIME storage format, naive UTC (see models.UTCDateTime)."""
    return value.astimezone(dt.UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def _to_positional(sql: str, style: str) -> tuple[str, list[str]]:
    """':name' placeholders → '?' (sqlite3) or '$n' (asyncpg), with the names in order."""
    import re

    names: list[str] = []

    def repl(m: "re.Match[str]") -> str:
        names.append(m.group(1))
        return "?" if style == "qmark" else f"${len(names)}"

    return re.sub(r"(?<!:):([a-z_]+)", repl, sql), names


class _Statement:
    def __init__(self, sql: str, style: str) -> None:
        self.sql, self.names = _to_positional(sql, style)

    def args(self, params: dict[str, Any]) -> list[Any]:
        return [params[n] for n in self.names]


class _Statements:
    """The hot path's statements in one driver's placeholder style."""

    def __init__(self, style: str) -> None:
        self.lookup = _Statement(LOOKUP_SQL, style)
        self.pending = _Statement(PENDING_SQL, style)
        self.settle = _Statement(SETTLE_RECORD_SQL, style)
        self.charge = _Statement(CHARGE_SQL, style)
        self.reserve = _Statement(RESERVE_SQL, style)
        self.progress = _Statement(PROGRESS_SQL, style)
        self.available = _Statement(AVAILABLE_SQL, style)
        self.ledger = _Statement(LEDGER_SQL, style)
        self.rollup = _Statement(ROLLUP_SQL, style)
        self.touch = _Statement(TOUCH_KEY_SQL, style)
        self.month_spend = _Statement(MONTH_SPEND_SQL, style)


class _NotWritten(Exception):
    """A batch failed before anything could reach the database (no connection, no lock)."""


async def _guarded(deps: DependencyHealth, op: Awaitable[T], *, write: bool = True) -> T:
    """Run one hot-path operation; a database outage comes out as DependencyUnavailable.

    Only a write that worked says the database is back: reads may work while writes cannot
    (disk full, a lock held by another process), and the state must not flap per request."""
    try:
        result = await op
    except Exception as exc:
        err = classify(exc, DATABASE)
        if err is None:
            raise
        if isinstance(exc, _NotWritten) or isinstance(exc.__cause__, _NotWritten):
            err.maybe_written = False
        raise deps.failed(err) from exc
    if write:
        deps.ok(DATABASE)
    return result


class _Writer:
    """Group commit: queued operations run in one transaction per batch."""

    def __init__(self, run_batch: Callable[[list[Any]], Any]) -> None:
        self._run_batch = run_batch
        self._queue: asyncio.Queue[tuple[Any, asyncio.Future[Any]]] | None = None
        self._task: asyncio.Task[None] | None = None

    def submit(self, op: Any) -> "asyncio.Future[Any]":
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._loop(), name="a2agent-db-writer")
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put_nowait((op, fut))
        return fut

    async def _loop(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                results = await self._run_batch([op for op, _ in batch])
            except Exception as exc:  # noqa: BLE001 - the whole batch failed (e.g. database down)
                results = [exc] * len(batch)
            for (_, fut), result in zip(batch, results, strict=False):
                if fut.done():
                    continue
                if isinstance(result, BaseException):
                    fut.set_exception(result)
                else:
                    fut.set_result(result)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


class SQLiteHotPath:
    def __init__(self, path: str, busy_timeout: float = 5.0, deps: DependencyHealth | None = None) -> None:
        self.path = path
        # how long a write waits for another process's lock before the request is refused
        self.busy_timeout = busy_timeout
        self.deps = deps or DependencyHealth()
        self._readers = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="a2agent-sqlite-read")
        self._write_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="a2agent-sqlite-write")
        self._local = threading.local()
        self._writer = _Writer(self._run_batch)
        self.q = _Statements("qmark")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            self._local.conn = conn
        return conn

    def _read(self, digest: str) -> tuple[Any, ...] | None:
        return self._conn().execute(self.q.lookup.sql, (digest,)).fetchone()

    async def lookup_key(self, digest: str) -> tuple[Any, ...] | None:
        loop = asyncio.get_running_loop()
        return await _guarded(self.deps, loop.run_in_executor(self._readers, self._read, digest),
                              write=False)

    def _month_spend(self, account_id: int, since: str) -> int:
        row = self._conn().execute(self.q.month_spend.sql, (account_id, since)).fetchone()
        return int(row[0] or 0)

    async def month_spend(self, account_id: int, since: dt.date) -> int:
        loop = asyncio.get_running_loop()
        return await _guarded(self.deps, loop.run_in_executor(
            self._readers, self._month_spend, account_id, since.isoformat()), write=False)

    async def open_request(self, values: dict[str, Any]) -> None:
        row = dict(values, created_at=_sqlite_time(values["created_at"]), stream=int(values["stream"]), false=0)
        await _guarded(self.deps, self._writer.submit(("pending", row)))

    async def settle(self, s: Settlement) -> bool:
        return bool(await _guarded(self.deps, self._writer.submit(("settle", s))))

    async def progress(self, request_id: str, output_tokens: int) -> None:
        await self._writer.submit(("progress", {"id": request_id, "output_tokens": output_tokens}))

    async def _run_batch(self, ops: list[Any]) -> list[Any]:
        return await asyncio.get_running_loop().run_in_executor(self._write_thread, self._apply, ops)

    def _apply(self, ops: list[Any]) -> list[Any]:
        """One transaction for the batch. A local file: whatever fails is rolled back here, so a
        failed write never has an unknown outcome."""
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")  # waits busy_timeout for another process's lock
        except sqlite3.OperationalError as exc:  # locked by another process, disk, file
            raise _NotWritten(str(exc)) from exc
        if len(ops) == 1:  # alone in its transaction: no savepoint needed
            try:
                result = self._apply_one(conn, *ops[0])
                conn.execute("COMMIT")
            except Exception as exc:  # noqa: BLE001 - reported to its caller
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                return [_not_written(exc)]
            return [result]
        results: list[Any] = []
        try:
            for kind, op in ops:
                conn.execute("SAVEPOINT op")
                try:
                    result = self._apply_one(conn, kind, op)
                    conn.execute("RELEASE op")
                except Exception as exc:  # noqa: BLE001 - only this operation fails
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    result = _not_written(exc)
                results.append(result)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):  # e.g. disk full at COMMIT: not written
                raise _NotWritten(str(exc)) from exc
            raise
        return results

    def _apply_one(self, conn: sqlite3.Connection, kind: str, op: Any) -> Any:
        if kind == "pending":
            if op["reserved"] and conn.execute(self.q.reserve.sql, self.q.reserve.args(op)).fetchone() is None:
                row = conn.execute(self.q.available.sql, self.q.available.args(op)).fetchone()
                raise HoldRefused(int(row[0]) if row else 0)
            conn.execute(self.q.pending.sql, self.q.pending.args(op))
            return True
        if kind == "progress":
            conn.execute(self.q.progress.sql, self.q.progress.args(op))
            return True
        return self._apply_settle(conn, op)

    def _apply_settle(self, conn: sqlite3.Connection, s: Settlement) -> bool:
        now = _sqlite_time(s.now)
        values = dict(s.values, id=s.request_id, settled_at=now, recovered=int(s.values["recovered"]))
        row = conn.execute(self.q.settle.sql, self.q.settle.args(values)).fetchone()
        if row is None:
            return False
        reserved = int(row[0] or 0)
        if s.cost or reserved:
            (after,) = conn.execute(self.q.charge.sql, (s.cost, reserved, s.account_id)).fetchone()
        if s.cost:
            conn.execute(self.q.ledger.sql, self.q.ledger.args(
                {"account_id": s.account_id, "amount": -s.cost, "balance_after": after,
                 "request_id": s.request_id, "created_at": now}))
        conn.execute(self.q.rollup.sql, self.q.rollup.args(_rollup_params(s, s.now.date().isoformat())))
        conn.execute(self.q.touch.sql, (now, s.key_id))
        return True

    async def close(self) -> None:
        await self._writer.close()
        self._readers.shutdown(wait=False)
        self._write_thread.shutdown(wait=True)


def _not_written(exc: Exception) -> Exception:
    """An operation rolled back locally: its SQLite error, marked as certainly not written."""
    if not isinstance(exc, sqlite3.OperationalError):
        return exc
    err = _NotWritten(str(exc))
    err.__cause__ = exc
    return err


def _lock_order(item: tuple[str, Any]) -> tuple[int, int, str]:
    """Every writer (each instance's batches) takes row locks in this one order — account, then
    its key, then the roll-up row — so concurrent batches cannot deadlock on PostgreSQL."""
    kind, op = item
    if kind == "progress":
        return (-1, 0, "")  # only its own pending record
    if kind == "pending":
        return (op["account_id"], -1, "")  # its hold locks the account row
    return (op.account_id, op.key_id, op.model)


def _rollup_params(s: Settlement, day: Any) -> dict[str, Any]:
    v = s.values
    return {"day": day, "account_id": s.account_id, "key_id": s.key_id, "model": s.model,
            "errors": 0 if s.ok else 1, "input_tokens": v["input_tokens"], "output_tokens": v["output_tokens"],
            "cache_read_tokens": v["cache_read_tokens"], "cache_write_tokens": v["cache_write_tokens"],
            "cost_micro": s.cost}


class PostgresHotPath:
    def __init__(self, dsn: str, pool_size: int, acquire_timeout: float = 5.0,
                 statement_timeout: float = 0.0, deps: DependencyHealth | None = None) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.acquire_timeout = acquire_timeout
        self.statement_timeout = statement_timeout
        self.deps = deps or DependencyHealth()
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._writer = _Writer(self._run_batch)
        self.q = _Statements("numeric")

    async def _get_pool(self) -> Any:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    import asyncpg

                    from a2agent.store.db import pg_timeouts

                    # min_size=0: connecting happens at acquire, bounded by its timeout, even
                    # when the database is away at start
                    self._pool = await asyncpg.create_pool(
                        self.dsn, min_size=0, max_size=max(self.pool_size // 2, 2),
                        **pg_timeouts(self.acquire_timeout, self.statement_timeout))
        return self._pool

    async def _lookup(self, digest: str) -> tuple[Any, ...] | None:
        pool = await self._get_pool()
        con = await pool.acquire(timeout=self.acquire_timeout)
        try:
            row = await con.fetchrow(self.q.lookup.sql, digest)
        except BaseException:
            con.terminate()  # see _run_batch
            raise
        finally:
            await self._release(con)
        return tuple(row) if row is not None else None

    async def _release(self, con: Any) -> None:
        try:
            await self._pool.release(con)
        except Exception:  # noqa: BLE001 - a broken connection is dropped by the pool
            log.debug("could not release a broken connection", exc_info=True)

    async def lookup_key(self, digest: str) -> tuple[Any, ...] | None:
        return await _guarded(self.deps, self._lookup(digest), write=False)

    async def _month_spend(self, account_id: int, since: dt.date) -> int:
        pool = await self._get_pool()
        con = await pool.acquire(timeout=self.acquire_timeout)
        try:
            value = await con.fetchval(self.q.month_spend.sql, account_id, since)
        except BaseException:
            con.terminate()  # see _run_batch
            raise
        finally:
            await self._release(con)
        return int(value or 0)

    async def month_spend(self, account_id: int, since: dt.date) -> int:
        return await _guarded(self.deps, self._month_spend(account_id, since), write=False)

    async def open_request(self, values: dict[str, Any]) -> None:
        await _guarded(self.deps, self._writer.submit(("pending", dict(values, false=False))))

    async def settle(self, s: Settlement) -> bool:
        return bool(await _guarded(self.deps, self._writer.submit(("settle", s))))

    async def _connection(self) -> Any:
        """A pooled connection, or _NotWritten: nothing of the batch reached the database."""
        try:
            pool = await self._get_pool()
            return await pool.acquire(timeout=self.acquire_timeout)
        except Exception as exc:  # noqa: BLE001 - classified by the caller
            raise _NotWritten(type(exc).__name__) from exc

    async def progress(self, request_id: str, output_tokens: int) -> None:
        await self._writer.submit(("progress", {"id": request_id, "output_tokens": output_tokens}))

    async def _run_batch(self, ops: list[Any]) -> list[Any]:
        con = await self._connection()
        try:
            return await self._apply_batch(con, ops)
        except BaseException:
            # a connection that failed mid-transaction is never trusted again: asyncpg may keep
            # it in a half-finished protocol state ("another operation is in progress")
            con.terminate()
            raise
        finally:
            await self._release(con)

    async def _apply_batch(self, con: Any, ops: list[Any]) -> list[Any]:
        """One transaction, each operation in its own savepoint. When the COMMIT's answer is
        lost with the connection, the operations' outcome is unknown: settlement is idempotent
        per request id, so retrying it never charges twice."""
        results: list[Any] = [None] * len(ops)
        async with con.transaction():
            for i in sorted(range(len(ops)), key=lambda i: _lock_order(ops[i])):
                kind, op = ops[i]
                try:
                    async with con.transaction():  # a savepoint
                        if kind == "pending":
                            await self._apply_pending(con, op)
                            results[i] = True
                        elif kind == "progress":
                            await con.execute(self.q.progress.sql, *self.q.progress.args(op))
                            results[i] = True
                        else:
                            results[i] = await self._apply_settle(con, op)
                except Exception as exc:  # noqa: BLE001 - only this operation fails
                    if classify(exc, DATABASE) is not None:
                        # a lock wait past the statement timeout, a lost connection: the rest
                        # of the batch would wait as long, one by one; fail it as a whole
                        raise
                    results[i] = exc
        return results

    async def _apply_pending(self, con: Any, op: dict[str, Any]) -> None:
        if op["reserved"] and await con.fetchval(self.q.reserve.sql, *self.q.reserve.args(op)) is None:
            available = await con.fetchval(self.q.available.sql, *self.q.available.args(op))
            raise HoldRefused(int(available or 0))
        await con.execute(self.q.pending.sql, *self.q.pending.args(op))

    async def _apply_settle(self, con: Any, s: Settlement) -> bool:
        values = dict(s.values, id=s.request_id, settled_at=s.now)
        row = await con.fetchrow(self.q.settle.sql, *self.q.settle.args(values))
        if row is None:
            return False
        reserved = int(row[0] or 0)
        after = None
        if s.cost or reserved:
            after = await con.fetchval(self.q.charge.sql, s.cost, reserved, s.account_id)
        if s.cost:
            await con.execute(self.q.ledger.sql, *self.q.ledger.args(
                {"account_id": s.account_id, "amount": -s.cost, "balance_after": after,
                 "request_id": s.request_id, "created_at": s.now}))
        await con.execute(self.q.rollup.sql, *self.q.rollup.args(_rollup_params(s, s.now.date())))
        await con.execute(self.q.touch.sql, s.now, s.key_id)
        return True

    async def close(self) -> None:
        await self._writer.close()
        if self._pool is not None:
            await self._pool.close()


HotPath = SQLiteHotPath | PostgresHotPath


def make_hotpath(url: str, pool_size: int, *, acquire_timeout: float = 5.0,
                 statement_timeout: float = 0.0, deps: DependencyHealth | None = None) -> HotPath:
    """``url`` is the SQLAlchemy URL (sqlite+aiosqlite:///… or postgresql+asyncpg://…)."""
    if url.startswith("sqlite"):
        return SQLiteHotPath(url.split(":///", 1)[1], acquire_timeout, deps)
    return PostgresHotPath("postgresql:" + url.split(":", 1)[1], pool_size, acquire_timeout,
                           statement_timeout, deps)
