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
from typing import Any, Callable

log = logging.getLogger("a2agent.store")

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
    "cache_write_tokens, cost_micro, recovered) VALUES (:id, :account_id, :key_id, :model, :protocol, "
    ":stream, 'pending', :client_ip, :input_estimate, :price_id, :created_at, :instance_id, 0, 0, 0, 0, 0, "
    ":false)"
)
SETTLE_RECORD_SQL = (
    "UPDATE request_records SET status = :status, http_status = :http_status, error_type = :error_type, "
    "channel = :channel, upstream_protocol = :upstream_protocol, input_tokens = :input_tokens, "
    "output_tokens = :output_tokens, cache_read_tokens = :cache_read_tokens, "
    "cache_write_tokens = :cache_write_tokens, cost_micro = :cost_micro, price_id = :price_id, "
    "usage_source = :usage_source, attempts = :attempts, latency_ms = :latency_ms, ttfb_ms = :ttfb_ms, "
    "settled_at = :settled_at, recovered = :recovered WHERE id = :id AND settled_at IS NULL"
)
CHARGE_SQL = "UPDATE accounts SET balance_micro = balance_micro - :cost WHERE id = :account_id RETURNING balance_micro"
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
        self.ledger = _Statement(LEDGER_SQL, style)
        self.rollup = _Statement(ROLLUP_SQL, style)
        self.touch = _Statement(TOUCH_KEY_SQL, style)
        self.month_spend = _Statement(MONTH_SPEND_SQL, style)


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
    def __init__(self, path: str) -> None:
        self.path = path
        self._readers = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="a2agent-sqlite-read")
        self._write_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="a2agent-sqlite-write")
        self._local = threading.local()
        self._writer = _Writer(self._run_batch)
        self.q = _Statements("qmark")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    def _read(self, digest: str) -> tuple[Any, ...] | None:
        return self._conn().execute(self.q.lookup.sql, (digest,)).fetchone()

    async def lookup_key(self, digest: str) -> tuple[Any, ...] | None:
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._read, digest)

    def _month_spend(self, account_id: int, since: str) -> int:
        row = self._conn().execute(self.q.month_spend.sql, (account_id, since)).fetchone()
        return int(row[0] or 0)

    async def month_spend(self, account_id: int, since: dt.date) -> int:
        return await asyncio.get_running_loop().run_in_executor(
            self._readers, self._month_spend, account_id, since.isoformat())

    async def open_request(self, values: dict[str, Any]) -> None:
        row = dict(values, created_at=_sqlite_time(values["created_at"]), stream=int(values["stream"]), false=0)
        await self._writer.submit(("pending", row))

    async def settle(self, s: Settlement) -> bool:
        return bool(await self._writer.submit(("settle", s)))

    async def _run_batch(self, ops: list[Any]) -> list[Any]:
        return await asyncio.get_running_loop().run_in_executor(self._write_thread, self._apply, ops)

    def _apply(self, ops: list[Any]) -> list[Any]:
        conn = self._conn()
        if len(ops) == 1:  # alone in its transaction: no savepoint needed
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = self._apply_one(conn, *ops[0])
            except Exception as exc:  # noqa: BLE001 - reported to its caller
                conn.execute("ROLLBACK")
                return [exc]
            conn.execute("COMMIT")
            return [result]
        results: list[Any] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for kind, op in ops:
                conn.execute("SAVEPOINT op")
                try:
                    result = self._apply_one(conn, kind, op)
                    conn.execute("RELEASE op")
                except Exception as exc:  # noqa: BLE001 - only this operation fails
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                    result = exc
                results.append(result)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    def _apply_one(self, conn: sqlite3.Connection, kind: str, op: Any) -> Any:
        if kind == "pending":
            conn.execute(self.q.pending.sql, self.q.pending.args(op))
            return True
        return self._apply_settle(conn, op)

    def _apply_settle(self, conn: sqlite3.Connection, s: Settlement) -> bool:
        now = _sqlite_time(s.now)
        values = dict(s.values, id=s.request_id, settled_at=now, recovered=int(s.values["recovered"]))
        if conn.execute(self.q.settle.sql, self.q.settle.args(values)).rowcount == 0:
            return False
        if s.cost:
            (after,) = conn.execute(self.q.charge.sql, (s.cost, s.account_id)).fetchone()
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


def _lock_order(item: tuple[str, Any]) -> tuple[int, int, str]:
    """Every writer (each instance's batches) takes row locks in this one order — account, then
    its key, then the roll-up row — so concurrent batches cannot deadlock on PostgreSQL."""
    kind, op = item
    if kind == "pending":
        return (-1, 0, "")  # inserts of new rows: nothing shared to wait for
    return (op.account_id, op.key_id, op.model)


def _rollup_params(s: Settlement, day: Any) -> dict[str, Any]:
    v = s.values
    return {"day": day, "account_id": s.account_id, "key_id": s.key_id, "model": s.model,
            "errors": 0 if s.ok else 1, "input_tokens": v["input_tokens"], "output_tokens": v["output_tokens"],
            "cache_read_tokens": v["cache_read_tokens"], "cache_write_tokens": v["cache_write_tokens"],
            "cost_micro": s.cost}


class PostgresHotPath:
    def __init__(self, dsn: str, pool_size: int) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: Any = None
        self._pool_lock = asyncio.Lock()
        self._writer = _Writer(self._run_batch)
        self.q = _Statements("numeric")

    async def _get_pool(self) -> Any:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    import asyncpg

                    self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=max(self.pool_size // 2, 2))
        return self._pool

    async def lookup_key(self, digest: str) -> tuple[Any, ...] | None:
        row = await (await self._get_pool()).fetchrow(self.q.lookup.sql, digest)
        return tuple(row) if row is not None else None

    async def month_spend(self, account_id: int, since: dt.date) -> int:
        value = await (await self._get_pool()).fetchval(self.q.month_spend.sql, account_id, since)
        return int(value or 0)

    async def open_request(self, values: dict[str, Any]) -> None:
        await self._writer.submit(("pending", dict(values, false=False)))

    async def settle(self, s: Settlement) -> bool:
        return bool(await self._writer.submit(("settle", s)))

    async def _run_batch(self, ops: list[Any]) -> list[Any]:
        pool = await self._get_pool()
        results: list[Any] = [None] * len(ops)
        async with pool.acquire() as con, con.transaction():
            for i in sorted(range(len(ops)), key=lambda i: _lock_order(ops[i])):
                kind, op = ops[i]
                try:
                    async with con.transaction():  # a savepoint
                        if kind == "pending":
                            await con.execute(self.q.pending.sql, *self.q.pending.args(op))
                            results[i] = True
                        else:
                            results[i] = await self._apply_settle(con, op)
                except Exception as exc:  # noqa: BLE001 - only this operation fails
                    results[i] = exc
        return results

    async def _apply_settle(self, con: Any, s: Settlement) -> bool:
        values = dict(s.values, id=s.request_id, settled_at=s.now)
        status = await con.execute(self.q.settle.sql, *self.q.settle.args(values))
        if status.endswith(" 0"):
            return False
        if s.cost:
            after = await con.fetchval(self.q.charge.sql, s.cost, s.account_id)
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


def make_hotpath(url: str, pool_size: int) -> HotPath:
    """``url`` is the SQLAlchemy URL (sqlite+aiosqlite:///… or postgresql+asyncpg://…)."""
    if url.startswith("sqlite"):
        return SQLiteHotPath(url.split(":///", 1)[1])
    return PostgresHotPath("postgresql:" + url.split(":", 1)[1], pool_size)
