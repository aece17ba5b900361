"""Processes and databases for bench/side_by_side.py: the floor proxy, the gateway variants,
CPU and peak RSS of a process tree, the PostgreSQL backends of the benchmark's own database and
the Redis server, read from /proc; and the settled-record counts on SQLite and PostgreSQL.

Loopback only; every wait is bounded. The shared PostgreSQL and Redis servers are only read
(/proc) and used through one throw-away database and one Redis DB number.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

import harness
from harness import CLK_TCK, Records

BENCH_DIR = Path(__file__).resolve().parent
PG_HOST = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/14")

SETTLED_SQL = ("select count(*), coalesce(sum(cost_micro), 0) from request_records "
               "where settled_at is not null")


# ---- /proc ---------------------------------------------------------------------------------
def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2:].split()


def children_map() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            f = _stat(int(entry))
            if f is not None:
                out.setdefault(int(f[1]), []).append(int(entry))
    return out


def tree(pid: int) -> list[int]:
    """pid and all its descendants (uvicorn's worker processes)."""
    kids = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_of(pids: list[int]) -> float:
    total = 0
    for p in pids:
        f = _stat(p)
        if f is not None:
            total += int(f[11]) + int(f[12])
    return total / CLK_TCK


def peak_rss_mib(pids: list[int]) -> float:
    """Sum of VmHWM (peak resident set) over the processes."""
    kib = 0
    for p in pids:
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmHWM:"):
                    kib += int(line.split()[1])
        except OSError:
            pass
    return round(kib / 1024, 1)


def cmdline(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# ---- processes under test ------------------------------------------------------------------
@dataclass
class Proc:
    """One side of the comparison: a process tree whose CPU is read per round."""

    name: str
    url: str
    pid: int
    stop_fn: object = None
    records: object = None  # SqliteCount | PgCount for gateways
    sent: int = 0  # gateway requests sent (warm-ups and checks included)
    missing: int = 0  # records still missing when a round's wait gave up (see settle_shortfalls)
    pids: list[int] = field(default_factory=list)

    def refresh(self) -> None:
        self.pids = tree(self.pid)

    def cpu(self) -> float:
        return cpu_of(self.pids or [self.pid])

    def rss(self) -> float:
        return peak_rss_mib(self.pids or [self.pid])


def start_floor(upstream_url: str, data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = harness.free_port()
    log = open(data_dir / "floor.log", "wb")
    proc = subprocess.Popen([sys.executable, str(BENCH_DIR / "_floor.py"), "--port", str(port),
                             "--upstream", upstream_url], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    with httpx.Client(timeout=2) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError("floor proxy exited: " + (data_dir / "floor.log").read_text()[-1500:])
            try:
                if client.get(url + "/readyz").status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("floor proxy not ready within 30 s")
            time.sleep(0.1)


def stop_proc(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return proc.returncode


# ---- record counts -------------------------------------------------------------------------
class SqliteCount:
    def __init__(self, db_path: Path) -> None:
        self.records = Records(db_path)

    async def settled(self) -> tuple[int, int]:
        return await asyncio.to_thread(self.records.settled)

    async def by_status(self) -> dict[str, int]:
        return await asyncio.to_thread(self.records.by_status)

    async def close(self) -> None:
        return None


class PgCount:
    """One persistent connection to the benchmark database; its backend is left out of the
    database CPU figures."""

    def __init__(self, conn: asyncpg.Connection, backend_pid: int) -> None:
        self.conn = conn
        self.backend_pid = backend_pid

    @classmethod
    async def open(cls, url: str) -> PgCount:
        conn = await asyncpg.connect(url)
        return cls(conn, await conn.fetchval("select pg_backend_pid()"))

    async def settled(self) -> tuple[int, int]:
        row = await self.conn.fetchrow(SETTLED_SQL)
        return int(row[0]), int(row[1])

    async def by_status(self) -> dict[str, int]:
        rows = await self.conn.fetch("select status, count(*) from request_records group by status")
        return {r[0]: r[1] for r in rows}

    async def close(self) -> None:
        await self.conn.close()


async def wait_settled(records: SqliteCount | PgCount, expected: int, timeout: float = 45.0) -> float:
    t0 = time.monotonic()
    while True:
        n = (await records.settled())[0]
        if n >= expected:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"only {n} of {expected} request records settled after {timeout:g}s")
        await asyncio.sleep(0.02)


# ---- the shared database servers (read only, plus one throw-away database) -----------------
def _psql(sql: str) -> None:
    subprocess.run(["psql", PG_HOST + "/postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql],
                   check=True, capture_output=True, timeout=60)


class PgDatabase:
    def __init__(self) -> None:
        self.name = "a2a_bench_" + uuid.uuid4().hex[:10]
        self.url = f"{PG_HOST}/{self.name}"
        self.exclude: set[int] = set()

    def create(self) -> None:
        _psql(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        _psql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def backends(self) -> list[int]:
        """Backends serving this database (their cmdline names it), minus the bench's own."""
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) not in self.exclude:
                cl = cmdline(int(entry))
                if cl.startswith("postgres: ") and f" {self.name} " in cl:
                    out.append(int(entry))
        return out

    def cpu(self) -> float:
        return cpu_of(self.backends())


def postgres_aux() -> list[int]:
    """The server's own processes that do work for every database (WAL writer, checkpointer,
    background writer, ...): `postgres: <role>` without a database name."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            cl = cmdline(int(entry))
            if cl.startswith("postgres: ") and any(
                    w in cl for w in ("walwriter", "checkpointer", "background writer", "autovacuum")):
                out.append(int(entry))
    return out


def redis_pid() -> int | None:
    import redis

    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
        pid = int(client.info("server")["process_id"])
        client.close()
        return pid
    except Exception:  # noqa: BLE001 - no Redis: no Redis figures
        return None
