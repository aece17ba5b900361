"""How fast are the console's usage pages and request log with a million request records?

Builds a SQLite database (migrated schema) holding N request records (default 1,000,000) of
one heavy account — 10 keys × 8 models over 90 days — plus their daily roll-ups, exactly as
settlement would have left them; then serves it with the real app over loopback HTTP and
times the pages: median and p95 of repeated GETs after a warm-up.

    .venv/bin/python bench/console_usage.py [--records 1000000] [--runs 30] [--keep DIR]

For contrast it also times the aggregate the roll-up replaces (a SUM over request_records).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from a2agent.billing.money import Prices  # noqa: E402
from a2agent.config import load_settings  # noqa: E402
from a2agent.services import Services  # noqa: E402
from a2agent.store.db import upgrade_sync  # noqa: E402
from tests.support.gateway import ThreadedGateway, free_port  # noqa: E402

KEYS = 10
MODELS = [f"model-{i}" for i in range(8)]
DAYS = 90
EMAIL = "heavy@example.com"
PASSWORD = "bench-password-1"


async def _setup(settings) -> tuple[int, list[int]]:  # type: ignore[no-untyped-def]
    services = Services(settings)
    try:
        acc = await services.accounts.create(EMAIL, PASSWORD, admin=True)
        await services.ledger.adjust(acc.id, 1_000_000_000, note="bench")
        await services.catalog.add_channel("up", protocol="openai", base_url="http://127.0.0.1:9/v1")
        for m in MODELS:
            await services.catalog.add_model(m, channel="up", prices=Prices(1_000_000, 2_000_000, 100_000, 0))
        keys = [(await services.accounts.create_key(acc.id, f"key-{i}"))[0].id for i in range(KEYS)]
        return acc.id, keys
    finally:
        await services.close()


def _fill(path: str, account_id: int, keys: list[int], n: int) -> float:
    """Bulk-load n request records and the matching daily_usage rows; returns seconds."""
    started = time.perf_counter()
    rng = random.Random(7)
    today = dt.datetime.now(dt.UTC).date()
    first = dt.datetime.combine(today - dt.timedelta(days=DAYS - 1), dt.time())
    span = DAYS * 86400 - 1
    rollup: dict[tuple[str, int, str], list[int]] = {}
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    sql = ("INSERT INTO request_records (id, account_id, key_id, model, channel, protocol, upstream_protocol,"
           " stream, status, http_status, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens,"
           " input_estimate, cost_micro, latency_ms, client_ip, created_at, settled_at, recovered)"
           " VALUES (?,?,?,?,'up','openai','openai',?,?,?,?,?,?,0,?,?,?,'127.0.0.1',?,?,0)")

    def rows(start: int, stop: int):  # type: ignore[no-untyped-def]
        for i in range(start, stop):
            when = first + dt.timedelta(seconds=rng.randint(0, span))
            key = keys[i % len(keys)]
            model = MODELS[rng.randrange(len(MODELS))]
            ok = rng.random() > 0.02
            inp, out, cached = rng.randint(50, 4000), rng.randint(10, 1500), rng.choice((0, 0, 512))
            cost = (inp * 1_000_000 + out * 2_000_000 + cached * 100_000 + 500_000) // 1_000_000
            agg = rollup.setdefault((when.date().isoformat(), key, model), [0, 0, 0, 0, 0, 0])
            agg[0] += 1
            agg[1] += 0 if ok else 1
            agg[2] += inp
            agg[3] += out
            agg[4] += cached
            agg[5] += cost
            stamp = when.strftime("%Y-%m-%d %H:%M:%S.%f")
            yield (f"req_{i:024x}", account_id, key, model, i % 3 == 0, "ok" if ok else "upstream_error",
                   200 if ok else 502, inp, out, cached, inp, cost, rng.randint(200, 9000), stamp, stamp)

    chunk = 100_000
    for start in range(0, n, chunk):
        with db:
            db.executemany(sql, rows(start, min(n, start + chunk)))
    with db:
        db.executemany(
            "INSERT INTO daily_usage (day, account_id, key_id, model, requests, errors, input_tokens,"
            " output_tokens, cache_read_tokens, cache_write_tokens, cost_micro) VALUES (?,?,?,?,?,?,?,?,?,0,?)",
            [(day, account_id, key, model, *v) for (day, key, model), v in rollup.items()])
    db.execute("ANALYZE")
    db.close()
    return time.perf_counter() - started


def _naive_sum(path: str, account_id: int) -> float:
    """The aggregate the roll-up replaces: SUM over the raw records of 30 days."""
    db = sqlite3.connect(path)
    since = (dt.datetime.now(dt.UTC) - dt.timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S")
    started = time.perf_counter()
    db.execute("SELECT model, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_micro)"
               " FROM request_records WHERE account_id = ? AND created_at >= ? GROUP BY model",
               (account_id, since)).fetchall()
    elapsed = time.perf_counter() - started
    db.close()
    return elapsed


def _deep_cursor(path: str) -> str:
    """The keyset cursor of a record in the middle of the table (an 'older' page far back)."""
    db = sqlite3.connect(path)
    n = db.execute("SELECT COUNT(*) FROM request_records").fetchone()[0]
    stamp, rid = db.execute("SELECT created_at, id FROM request_records ORDER BY created_at DESC, id DESC"
                            " LIMIT 1 OFFSET ?", (n // 2,)).fetchone()
    db.close()
    when = dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC)
    from urllib.parse import quote

    return quote(f"{when.isoformat()}~{rid}", safe="")


def _login(client: httpx.Client) -> None:
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = client.post("/login", data={"csrf": token, "email": EMAIL, "password": PASSWORD})
    assert r.status_code == 303, r.text[:300]


def _time(client: httpx.Client, path: str, runs: int) -> tuple[float, float]:
    for _ in range(3):
        r = client.get(path)
        assert r.status_code in (200, 303), (path, r.status_code)
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        r = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        assert r.status_code in (200, 303)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--keep", type=Path, default=None, help="data directory to keep (default: temporary)")
    args = ap.parse_args()
    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="a2a-bench-console-"))
    settings = load_settings(environ={"A2AGENT_DATA_DIR": str(data_dir)},
                             overrides={"local_model": False, "port": free_port()})
    upgrade_sync(settings.database_url)
    account_id, keys = asyncio.run(_setup(settings))
    path = settings.database_url.split(":///", 1)[1]
    load_s = _fill(path, account_id, keys, args.records)
    size_mb = Path(path).stat().st_size / 1e6
    print(f"loaded {args.records:,} request records + roll-ups in {load_s:.1f}s; database {size_mb:.0f} MB")
    print(f"naive 30-day SUM over request_records (what the roll-up avoids): "
          f"{_naive_sum(path, account_id) * 1000:.0f} ms")
    deep = _deep_cursor(path)
    pages = ["/usage", "/usage?period=90d", f"/usage?period=90d&key={keys[3]}", "/usage?period=90d&page=100",
             "/", "/keys", "/billing", "/admin/usage?period=90d", f"/admin/users/{account_id}",
             # the request log: keyset pages, filters, a record, search by id
             "/requests", "/requests?period=90d", f"/requests?period=90d&before={deep}",
             f"/requests?period=90d&key={keys[3]}", "/requests?period=90d&status=failed",
             "/requests?period=90d&model=model-3&protocol=openai", "/admin/requests?period=90d",
             f"/requests/req_{7:024x}", f"/requests?q=req_{7:024x}"]
    with ThreadedGateway(settings), httpx.Client(base_url=f"http://127.0.0.1:{settings.port}",
                                                 timeout=60) as client:
        _login(client)
        print(f"{'page':44} {'median':>9} {'p95':>9}   ({args.runs} runs after warm-up)")
        for page in pages:
            med, p95 = _time(client, page, args.runs)
            print(f"{page:44} {med:7.1f}ms {p95:7.1f}ms")


if __name__ == "__main__":
    main()
