"""Engines, sessions and migrations.

SQLite: one writer connection per process (``BEGIN IMMEDIATE`` so writers from other
processes, such as the CLI, queue on the lock instead of failing), several reader
connections, WAL journal. PostgreSQL: one pooled engine for both.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any, AsyncIterator, cast

from sqlalchemy import CursorResult, Result, event, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from a2agent.store.faults import DATABASE, classify

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def _sqlite_engine(url: str, *, writer: bool, pool_size: int, pool_timeout: float) -> AsyncEngine:
    engine = create_async_engine(
        url,
        pool_size=1 if writer else pool_size,
        max_overflow=0,
        pool_timeout=pool_timeout,
        connect_args={"timeout": 30, "check_same_thread": False},
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


def pg_timeouts(acquire_timeout: float, statement_timeout: float) -> dict[str, Any]:
    """asyncpg connection arguments that bound every wait: connecting, and each statement
    (server side ``statement_timeout``; client side a little later, for a server that no
    longer answers at all). 0 = no statement timeout."""
    args: dict[str, Any] = {"timeout": acquire_timeout}
    if statement_timeout > 0:
        args["server_settings"] = {"statement_timeout": str(int(statement_timeout * 1000))}
        args["command_timeout"] = statement_timeout + 2
    return args


@contextlib.asynccontextmanager
async def _outage_as_unavailable() -> AsyncIterator[None]:
    """Driver errors that mean the database is away (including the raw socket errors the
    drivers raise while connecting) come out as DependencyUnavailable."""
    try:
        yield
    except Exception as exc:
        err = classify(exc, DATABASE)
        if err is None:
            raise
        raise err from exc


class Database:
    """Owns the engines. ``read()`` for queries, ``write()`` for transactions that change data.

    ``acquire_timeout`` bounds the wait for a pooled connection (and for connecting);
    ``statement_timeout`` bounds each PostgreSQL statement (0 = unbounded)."""

    def __init__(self, url: str, *, pool_size: int = 10, max_overflow: int = 10,
                 acquire_timeout: float = 5.0, statement_timeout: float = 0.0) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self._path = url.split(":///", 1)[1]
            _private_sqlite_file(Path(self._path))
            self.write_engine = _sqlite_engine(url, writer=True, pool_size=1,
                                               pool_timeout=acquire_timeout)
            self.read_engine = _sqlite_engine(url, writer=False, pool_size=4,
                                              pool_timeout=acquire_timeout)
        else:
            self.write_engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True,
                pool_timeout=acquire_timeout,
                connect_args=pg_timeouts(acquire_timeout, statement_timeout),
            )
            self.read_engine = self.write_engine
        self._write_sessions = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction; commits on success, rolls back on error."""
        async with _outage_as_unavailable(), self._write_sessions() as session, session.begin():
            yield session

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with _outage_as_unavailable(), self._read_sessions() as session:
            yield session

    @contextlib.asynccontextmanager
    async def write_conn(self) -> AsyncIterator[AsyncConnection]:
        """Core-level transaction (cheaper than the ORM on the hot path)."""
        async with _outage_as_unavailable(), self.write_engine.begin() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def read_conn(self) -> AsyncIterator[AsyncConnection]:
        async with _outage_as_unavailable(), self.read_engine.connect() as conn:
            yield conn

    async def ping(self, timeout: float = 1.0) -> bool:
        """Readiness: the database answers a trivial query within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                async with self.read_engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
            return True
        except Exception:  # noqa: BLE001 - readiness reports any failure as not ready
            return False

    async def dispose(self) -> None:
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()


def _alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Run Alembic migrations (blocking). Safe to call on an up-to-date database."""
    from alembic import command

    if url.startswith("sqlite"):
        _private_sqlite_file(Path(url.split(":///", 1)[1]))
    command.upgrade(_alembic_config(url), revision)


def _private_sqlite_file(path: Path) -> None:
    """A new SQLite database file is created 0600 (its directory 0700), before SQLite opens it:
    balances, key digests and channel credentials are in it."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))


async def upgrade(url: str, revision: str = "head") -> None:
    await asyncio.to_thread(upgrade_sync, url, revision)


def make_migration_engine(url: str) -> AsyncEngine:
    return create_async_engine(url, poolclass=NullPool)


def affected(result: Result[Any]) -> int:
    """Rows matched by an UPDATE/DELETE executed through a session (a ``CursorResult``)."""
    return cast("CursorResult[Any]", result).rowcount
