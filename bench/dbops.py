"""CPU and wall time of the gateway's per-request database operations, called in-process one
after another (as at concurrency 1) on the gateway's own services and a fresh SQLite file:
the key lookup, the pending record INSERT and the settlement transaction, with a `SELECT 1`
through the same engine and the raw key-lookup SQL on plain sqlite3 as floors.

    .venv/bin/python bench/dbops.py [--n 500] [--profile]

CPU is process CPU (time.process_time: the event loop and aiosqlite's threads). --profile adds
cProfile's top functions (event-loop thread only) for the key lookup and the settlement.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402


class _FakeUpstream:
    openai_base = "http://127.0.0.1:9/v1"
    anthropic_base = "http://127.0.0.1:9"


HOPS = [0]  # calls into aiosqlite's worker thread (each: queue put, thread wake, loop wake-up)
SQL = [0]  # statements sent to sqlite3 (BEGIN/COMMIT/ROLLBACK included)


def _count_hops() -> None:
    import aiosqlite.core as core

    original = core.Connection._execute

    async def _execute(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        HOPS[0] += 1
        name = getattr(fn, "__name__", "")
        if name in ("execute", "executemany", "commit", "rollback"):
            SQL[0] += 1
        return await original(self, fn, *args, **kwargs)

    core.Connection._execute = _execute  # type: ignore[method-assign]


async def timed(label: str, n: int, make, profile: bool, out: dict) -> None:  # type: ignore[no-untyped-def]
    prof = cProfile.Profile() if profile else None
    h0, q0 = HOPS[0], SQL[0]
    c0, w0 = time.process_time(), time.perf_counter()
    if prof:
        prof.enable()
    for i in range(n):
        await make(i)
    if prof:
        prof.disable()
    c1, w1 = time.process_time(), time.perf_counter()
    out[label] = {"cpu_us": round((c1 - c0) / n * 1e6), "wall_us": round((w1 - w0) / n * 1e6),
                  "thread_hops": round((HOPS[0] - h0) / n, 1), "sqlite_calls": round((SQL[0] - q0) / n, 1)}
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(12)
        out[label]["profile"] = s.getvalue()


async def run(data_dir: Path, key: str, n: int, profile: bool) -> dict:
    from sqlalchemy import text

    from a2agent.billing.ledger import Outcome, PendingRequest
    from a2agent.config import load_settings
    from a2agent.services import Services

    _count_hops()
    settings = load_settings(environ={"A2AGENT_DATA_DIR": str(data_dir)}, overrides={"local_model": False})
    services = Services(settings)
    out: dict = {}
    try:
        principal = await services.accounts.authenticate(key)
        assert principal is not None
        snap = await services.catalog.snapshot(principal.catalog_version)
        prices = snap.models[harness.OPENAI_MODEL].prices
        pendings = [PendingRequest(f"req_bench{os.getpid()}_{i:08d}", principal.account_id, principal.key_id,
                                   harness.OPENAI_MODEL, prices) for i in range(n)]
        outcome = Outcome(status="ok", input_tokens=9, output_tokens=5, usage_source="upstream", http_status=200,
                          channel="up", upstream_protocol="openai", latency_ms=1, ttfb_ms=1,
                          attempts=[{"channel": "up", "outcome": "ok", "latency_ms": 1}])

        async def select1(_i: int) -> None:
            async with services.db.read_conn() as conn:
                await conn.execute(text("SELECT 1"))

        async def auth(_i: int) -> None:
            await services.accounts.authenticate(key)

        async def open_(i: int) -> None:
            await services.ledger.open_request(pendings[i], protocol="openai", stream=False, client_ip="127.0.0.1",
                                               input_estimate=2, instance_id=services.instance_id)

        async def settle(i: int) -> None:
            await services.ledger.settle(pendings[i], outcome)

        # the same calls with a connection that executes nothing: the cost of building the
        # SQLAlchemy statements in Python, before any cache-key, compile, driver or thread work
        import contextlib

        from a2agent.billing.ledger import Ledger

        class _Result:
            rowcount = 1

        class _FakeConn:
            async def execute(self, *_a, **_k):  # type: ignore[no-untyped-def]
                return _Result()

            async def scalar(self, *_a, **_k):  # type: ignore[no-untyped-def]
                return 1

        class _FakeDb:
            is_sqlite = True

            @contextlib.asynccontextmanager
            async def write_conn(self):  # type: ignore[no-untyped-def]
                yield _FakeConn()

        fake = Ledger(_FakeDb(), services.hasher)  # type: ignore[arg-type]

        async def settle_build(i: int) -> None:
            await fake.settle(pendings[i], outcome)

        async def open_build(i: int) -> None:
            await fake.open_request(pendings[i], protocol="openai", stream=False, client_ip="127.0.0.1",
                                    input_estimate=2, instance_id=services.instance_id)

        for _ in range(20):  # warm the engines, statement caches and connection threads
            await select1(0)
            await auth(0)
        await timed("SELECT 1 via read_conn", n, select1, False, out)
        await timed("key lookup (authenticate)", n, auth, profile, out)
        await timed("pending record (open_request)", n, open_, False, out)
        await timed("settlement (settle)", n, settle, profile, out)
        await timed("  its statements built, not run", n, settle_build, False, out)
        await timed("  open_request's statement built", n, open_build, False, out)
    finally:
        await services.close()

    # floor: the key lookup's SQL on plain sqlite3, no engine, no thread hop
    from a2agent.auth.accounts import _key_lookup_statement
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    compiled = _key_lookup_statement().compile(dialect=sqlite_dialect.dialect())
    digest = services.hasher.digest(key)
    conn = sqlite3.connect(data_dir / "a2agent.db")
    params = [digest if p == "digest" else compiled.params[p] for p in compiled.positiontup]
    c0, w0 = time.process_time(), time.perf_counter()
    for _ in range(n):
        conn.execute(str(compiled), params).fetchone()
    c1, w1 = time.process_time(), time.perf_counter()
    conn.close()
    out["key lookup SQL on plain sqlite3"] = {"cpu_us": round((c1 - c0) / n * 1e6), "wall_us": round((w1 - w0) / n * 1e6)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    data_dir = Path(tempfile.mkdtemp(prefix="a2agent-dbops-"))
    try:
        key = harness.prepare(data_dir, _FakeUpstream())  # type: ignore[arg-type]
        try:
            import uvloop

            out = uvloop.run(run(data_dir, key, args.n, args.profile))
        except ImportError:
            out = asyncio.run(run(data_dir, key, args.n, args.profile))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"{'operation (one after another)':<36} {'CPU µs':>8} {'wall µs':>8} {'hops':>6} {'sqlite calls':>13}")
    for label, r in out.items():
        print(f"  {label:<34} {r['cpu_us']:8} {r['wall_us']:8} {r.get('thread_hops', '-'):>6} "
              f"{r.get('sqlite_calls', '-'):>13}")
    print("  hops = calls into aiosqlite's worker thread; sqlite calls = execute/commit/rollback among them")
    for label, r in out.items():
        if "profile" in r:
            print(f"\n--- cProfile, {label} (event-loop thread; {args.n} calls) ---")
            print("\n".join(r["profile"].splitlines()[:30]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
