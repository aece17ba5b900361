"""Side-by-side data-plane benchmark: the same requests, in one run and alternating rounds, to

* `direct`  - the scripted upstream itself (tests/support/upstream.py);
* `floor`   - a bare Python proxy (bench/_floor.py: raw ASGI + one aiohttp session, uvicorn
              with uvloop/httptools; no auth, billing or records);
* `sqlite`  - the gateway on SQLite;
* `pg`      - the gateway on PostgreSQL (a fresh database on the shared server, dropped
              afterwards) + Redis (DB 14 unless BENCH_REDIS says otherwise);
* `w2`      - the gateway with --workers 2 on SQLite;

for each lane (OpenAI passthrough, Anthropic passthrough, Anthropic->OpenAI translation, and
the Responses API when the gateway and the upstream both serve it), non-stream and stream, at
concurrency 1, 16, 64 and 256. Every figure is reported as a ratio to the floor from the same
run; the PostgreSQL backends' and Redis's CPU are read from /proc next to the gateway's.

    .venv/bin/python bench/side_by_side.py [--quick] [--keep] [--out FILE]

Exits non-zero when a request failed, when settled records differ from requests sent on any
gateway, or when `a2agent db verify` fails. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import load  # noqa: E402
import sbs_procs as sp  # noqa: E402
import sbs_report  # noqa: E402
from harness import ANTHROPIC_MODEL, OPENAI_MODEL  # noqa: E402
from load import Errors, Target, percentile  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
SIDES = ("direct", "floor", "sqlite", "pg", "w2")
# eight words: an OpenAI stream of 11 events (role, 8 words, finish, [DONE]), as in the issue
ANSWER = "Hello from the upstream: one two three four"


@dataclass(frozen=True)
class Plan:
    c1_warmup: int  # sequential requests per side before a c=1 point
    c1_rounds: int
    c1_requests: int  # per round per side (non-stream; streams use half)
    rounds: int  # rounds per side at c > 1
    round_requests: int  # bound per round per side at c > 1
    round_seconds: float  # bound per round per side at c > 1
    idle_seconds: float
    concurrencies: tuple[int, ...] = (1, 16, 64, 256)


FULL = Plan(c1_warmup=60, c1_rounds=3, c1_requests=200, rounds=2, round_requests=3000, round_seconds=1.5,
            idle_seconds=3.0)
QUICK = Plan(c1_warmup=20, c1_rounds=1, c1_requests=100, rounds=1, round_requests=1000, round_seconds=0.8,
             idle_seconds=1.5, concurrencies=(1, 16, 64))


def lane_request(lane: str, stream: bool, key: str) -> tuple[str, dict[str, str], bytes]:
    if lane in ("anthropic", "translate"):
        payload: dict = {"model": ANTHROPIC_MODEL if lane == "anthropic" else OPENAI_MODEL, "max_tokens": 64,
                         "messages": [{"role": "user", "content": "hello"}]}
        headers = {"x-api-key": key, "anthropic-version": "2023-06-01", "content-type": "application/json"}
        path = "/v1/messages"
    elif lane == "responses":
        payload = {"model": OPENAI_MODEL, "input": "hello"}
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        path = "/v1/responses"
    else:
        payload = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "hello"}]}
        headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
        path = "/v1/chat/completions"
    if stream:
        payload["stream"] = True
    return path, headers, orjson.dumps(payload)


async def timed_burst(sess: aiohttp.ClientSession, t: Target, concurrency: int, max_requests: int,
                      max_seconds: float, errors: Errors) -> dict:
    """`concurrency` workers send back to back (bounded by count and time); latency per success."""
    started = 0
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds

    async def worker() -> None:
        nonlocal started
        while started < max_requests and time.perf_counter() < deadline:
            started += 1
            r = await (load.one_stream(sess, t, errors) if t.stream else load.one(sess, t, errors))
            if r is not None:
                samples.append(r[1] if isinstance(r, tuple) else r)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {"sent": started, "samples": samples, "elapsed_s": time.perf_counter() - t0}


class Bench:
    def __init__(self, plan: Plan, procs: dict[str, sp.Proc], direct_url: str, keys: dict[str, str],
                 pg: sp.PgDatabase, redis_pid: int | None) -> None:
        # each gateway has its own data dir and so its own key; the bodies are byte-identical
        self.plan, self.procs, self.direct_url, self.keys = plan, procs, direct_url, keys
        self.pg, self.redis_pid = pg, redis_pid
        self.idle: dict[str, list[float]] = {}
        self.windows: list[dict] = []
        self.lanes: list[str] = ["openai", "anthropic", "translate"]
        self.skipped: dict[str, str] = {}
        self.stream_events: dict[str, int] = {}
        self.only: set[str] | None = None  # --lanes
        self.shortfalls: list[dict] = []  # rounds whose records were not all settled in time

    def url(self, side: str) -> str:
        return self.direct_url if side == "direct" else self.procs[side].url

    def key(self, side: str) -> str:
        return self.keys.get(side, self.keys["sqlite"])

    # ---- CPU clocks ---------------------------------------------------------------------------
    def clocks(self) -> dict[str, object]:
        out: dict[str, object] = {s: p.cpu() for s, p in self.procs.items()}
        out["pg_backends"] = {p: sp.cpu_of([p]) for p in self.pg.backends()}
        out["pg_aux"] = sp.cpu_of(sp.postgres_aux())
        out["redis"] = sp.cpu_of([self.redis_pid]) if self.redis_pid else 0.0
        return out

    @staticmethod
    def delta(a: dict, b: dict) -> dict[str, float]:
        out = {k: b[k] - a[k] for k in b if k != "pg_backends"}
        out["pg_backends"] = sum(v - a["pg_backends"].get(p, 0.0) for p, v in b["pg_backends"].items())
        return out

    async def idle_window(self) -> None:
        await asyncio.sleep(0.3)
        a, t0 = self.clocks(), time.monotonic()
        await asyncio.sleep(self.plan.idle_seconds)
        d, wall = self.delta(a, self.clocks()), time.monotonic() - t0
        for k, v in d.items():
            self.idle.setdefault(k, []).append(v / wall)

    def idle_rate(self, k: str) -> float:
        v = self.idle.get(k, [])
        return sum(v) / len(v) if v else 0.0

    # ---- one round on one side ----------------------------------------------------------------
    async def round(self, point: str, side: str, sess: aiohttp.ClientSession, t: Target, c: int,
                    n: int, seconds: float, errors: Errors, measured: bool) -> dict:
        a, t0 = self.clocks(), time.monotonic()
        if c == 1:
            res = {"sent": n, "samples": [], "elapsed_s": 0.0}
            t_start = time.perf_counter()
            for r in await load.sequential(sess, t, n, errors):
                res["samples"].append(r[1] if isinstance(r, tuple) else r)
            res["elapsed_s"] = time.perf_counter() - t_start
        else:
            res = await timed_burst(sess, t, c, n, seconds, errors)
        proc = self.procs.get(side)
        if proc is not None and proc.records is not None:
            proc.sent += res["sent"]
            try:
                await sp.wait_settled(proc.records, proc.sent)
            except TimeoutError as exc:
                # recorded (and checked again at the end, after a graceful stop); later rounds
                # count from what is settled now, so one shortfall does not stall every round
                settled = (await proc.records.settled())[0]
                print(f"    {side} {point}: {exc}", flush=True)
                self.shortfalls.append({"point": point, "side": side, "expected": proc.sent,
                                        "settled": settled, "errors_so_far": dict(errors.counts)})
                proc.missing += proc.sent - settled
                proc.sent = settled
        if measured:
            d = self.delta(a, self.clocks())
            self.windows.append({"point": point, "side": side, "wall_s": time.monotonic() - t0,
                                 "requests": res["sent"], **d})
        return res

    async def point(self, lane: str, stream: bool, c: int) -> dict:
        name = f"{lane}_{'stream' if stream else 'nonstream'}_c{c}"
        targets = {}
        for s in SIDES:
            path, headers, body = lane_request(lane, stream, self.key(s))
            targets[s] = Target(s, self.url(s) + path, headers, body, stream)
        errors = {s: Errors() for s in SIDES}
        samples: dict[str, list[float]] = {s: [] for s in SIDES}
        totals = {s: {"sent": 0, "ok": 0, "elapsed_s": 0.0} for s in SIDES}
        p = self.plan
        n_c1 = p.c1_requests // 2 if stream else p.c1_requests
        sessions = {s: load.session(c) for s in SIDES}
        try:
            for s in SIDES:  # check, then warm the pools (not measured; gateway records counted)
                await load.check(sessions[s], targets[s])
                if s in self.procs and self.procs[s].records is not None:
                    self.procs[s].sent += 1
                warm = p.c1_warmup if c == 1 else min(2 * c, p.round_requests)
                await self.round(name, s, sessions[s], targets[s], c, warm, p.round_seconds, errors[s], False)
            for r in range(p.c1_rounds if c == 1 else p.rounds):
                order = SIDES[r % len(SIDES):] + SIDES[:r % len(SIDES)]
                for s in order:
                    res = await self.round(name, s, sessions[s], targets[s], c,
                                           n_c1 if c == 1 else p.round_requests, p.round_seconds,
                                           errors[s], True)
                    samples[s].extend(res["samples"])
                    totals[s]["sent"] += res["sent"]
                    totals[s]["ok"] += len(res["samples"])
                    totals[s]["elapsed_s"] += res["elapsed_s"]
        finally:
            for sess in sessions.values():
                await sess.close()
        out: dict = {"lane": lane, "stream": stream, "concurrency": c, "sides": {}}
        for s in SIDES:
            x = samples[s]
            out["sides"][s] = {
                "sent": totals[s]["sent"], "ok": totals[s]["ok"], "errors": dict(errors[s].counts),
                "rps": round(totals[s]["ok"] / totals[s]["elapsed_s"], 1) if totals[s]["elapsed_s"] else None,
                "p50_ms": round(percentile(x, 50) * 1000, 3) if x else None,
                "p99_ms": round(percentile(x, 99) * 1000, 3) if x else None,
            }
            out["sides"][s].update(self.cpu_figures(name, s))
        return {name: out}

    def cpu_figures(self, point: str, side: str) -> dict:
        ws = [w for w in self.windows if w["point"] == point and w["side"] == side]
        n = sum(w["requests"] for w in ws)
        if not ws or not n or side == "direct":
            return {}
        wall = sum(w["wall_s"] for w in ws)

        def per(k: str) -> float:
            net = sum(w[k] for w in ws) - self.idle_rate(k) * wall
            return round(max(net, 0.0) / n * 1e6, 1)

        out = {"cpu_us": per(side)}
        if side == "pg":
            out["db_us"] = {"pg_backends": per("pg_backends"), "pg_aux": per("pg_aux"), "redis": per("redis")}
        return out

    # ---- lanes that exist in the code under test ----------------------------------------------
    async def probe(self) -> None:
        async with load.session(1) as sess:
            for lane in ("openai", "anthropic", "translate", "responses"):
                ok = True
                for side in ("direct", "sqlite"):
                    path, headers, body = lane_request(lane, True, self.key(side))
                    async with sess.post(self.url(side) + path, data=body, headers=headers) as r:
                        raw = await r.read()
                        if r.status != 200:
                            ok = False
                            self.skipped[lane] = f"{side} answered HTTP {r.status} on {path}"
                    if side == "direct" and ok:
                        self.stream_events[lane] = raw.count(b"\n\n")
                if ok and lane not in self.lanes:
                    self.lanes.append(lane)
                if not ok and lane != "responses":
                    raise RuntimeError(f"lane {lane}: {self.skipped[lane]}")
        if self.only:
            self.lanes = [lane for lane in self.lanes if lane in self.only]
        # a probe that found no route leaves no record: start the count from what is settled
        await asyncio.sleep(1.0)
        self.procs["sqlite"].sent = (await self.procs["sqlite"].records.settled())[0]

    async def run(self) -> dict:
        await self.probe()
        await self.idle_window()
        points: dict = {}
        for lane in self.lanes:
            for stream in (False, True):
                for c in self.plan.concurrencies:
                    print(f"  {lane} {'stream' if stream else 'non-stream'} c={c} ...", flush=True)
                    points.update(await self.point(lane, stream, c))
        await self.idle_window()
        for proc in self.procs.values():
            proc.refresh()
        return {"lanes": self.lanes, "skipped_lanes": self.skipped, "settle_shortfalls": self.shortfalls, "stream_events_direct": self.stream_events,
                "idle_cpu_rate": {k: [round(x, 5) for x in v] for k, v in self.idle.items()},
                "peak_rss_mib": {s: p.rss() for s, p in self.procs.items()}, "points": points}


# ---- orchestration ---------------------------------------------------------------------------
def git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=BENCH_DIR, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


async def money(procs: dict[str, sp.Proc], dirs: dict[str, Path], envs: dict[str, dict]) -> dict:
    out = {}
    for side in ("sqlite", "pg", "w2"):
        proc = procs[side]
        n, cost = await proc.records.settled()
        verify = harness.cli(dirs[side], "db", "verify", check=False, env_extra=envs[side])
        sent = proc.sent + proc.missing
        out[side] = {"requests_sent": sent, "settled_records": n, "cost_micro_sum": cost,
                     "records_by_status": await proc.records.by_status(), "records_match": n == sent,
                     "db_verify_exit": verify.returncode,
                     "db_verify_output": (verify.stdout + verify.stderr).strip()[-400:]}
    return out


async def amain(args: argparse.Namespace, plan: Plan, root: Path) -> dict:
    upstream = harness.spawn_upstream(None, "--text", ANSWER)
    pg = sp.PgDatabase()
    gateways: dict[str, harness.Gateway] = {}
    floor_proc = None
    pg_records = None
    try:
        pg.create()
        dirs = {s: root / s for s in ("sqlite", "pg", "w2")}
        envs = {"sqlite": {}, "w2": {},
                "pg": {"A2AGENT_DATABASE_URL": pg.url, "A2AGENT_REDIS_URL": sp.REDIS_URL}}
        keys = {}
        for side, d in dirs.items():
            d.mkdir()
            keys[side] = harness.prepare(d, upstream, envs[side])
        print(f"upstream {upstream.url}; database {pg.name}; starting floor and gateways ...", flush=True)
        floor_proc, floor_url = sp.start_floor(upstream.url, root)
        for side, serve_args in (("sqlite", []), ("pg", []), ("w2", ["--workers", "2"])):
            gateways[side] = harness.start_gateway(dirs[side], extra_env=envs[side], serve_args=serve_args,
                                                   log_name=f"gateway-{side}.log")
        pg_records = await sp.PgCount.open(pg.url)
        pg.exclude.add(pg_records.backend_pid)
        procs = {"floor": sp.Proc("floor", floor_url, floor_proc.pid)}
        for side, gw in gateways.items():
            rec = pg_records if side == "pg" else sp.SqliteCount(dirs[side] / "a2agent.db")
            procs[side] = sp.Proc(side, gw.url, gw.pid, records=rec)
        for proc in procs.values():
            proc.refresh()
        redis_pid = sp.redis_pid()
        bench = Bench(plan, procs, upstream.url, keys, pg, redis_pid)
        if args.lanes:
            bench.only = set(args.lanes.split(","))
        results = await bench.run()
        exits = {side: gw.stop() for side, gw in gateways.items()}
        exits["floor"] = sp.stop_proc(floor_proc)
        results["exit_codes"] = exits
        results["money"] = await money(procs, dirs, envs)
        results["redis_pid_found"] = redis_pid is not None
        return results
    finally:
        for gw in gateways.values():
            gw.stop()
        if floor_proc is not None:
            sp.stop_proc(floor_proc)
        if pg_records is not None:
            await pg_records.close()
        upstream.close()
        pg.drop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts, c = 1/16/64 (a few minutes)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dirs (path is printed)")
    ap.add_argument("--lanes", help="comma-separated subset of openai,anthropic,translate,responses (debugging)")
    ap.add_argument("--concurrency", help="comma-separated concurrencies instead of the plan's (debugging)")
    ap.add_argument("--out", type=Path, default=None,
                    help="results file (default bench/results/side_by_side[-quick].json)")
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.concurrency:
        plan = dataclasses.replace(plan, concurrencies=tuple(int(c) for c in args.concurrency.split(",")))
    out = args.out or BENCH_DIR / "results" / f"side_by_side{'-quick' if args.quick else ''}.json"
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="a2agent-sbs-"))
    loadavg_before = open("/proc/loadavg").read().split()[:3]
    try:
        import uvloop

        results = uvloop.run(amain(args, plan, root))
    finally:
        if args.keep:
            print(f"data dirs kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    report = {"meta": {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "git_head": git("rev-parse", "HEAD"),
        "src_changes": (git("status", "--porcelain", "--", "src") or "").splitlines(),
        "python": platform.python_version(), "cpus": os.cpu_count(),
        "loadavg_before": loadavg_before, "loadavg_after": open("/proc/loadavg").read().split()[:3],
        "plan": plan.__dict__, "duration_s": round(time.monotonic() - started, 1)},
        "results": results}
    report["summary"] = sbs_report.summary(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    out.with_suffix(".md").write_text(sbs_report.markdown(report))
    print()
    print(sbs_report.render(report))
    print(f"\nwrote {out} in {report['meta']['duration_s']} s")
    failures = sbs_report.failures(results)
    for f in failures:
        print("FAILED:", f, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
