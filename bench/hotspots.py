"""Where does the gateway spend its CPU per request? Runs the benchmark's setup, sends one
scenario's request through the real gateway process for a bounded time, and prints:

* the gateway's CPU per request by thread (from /proc/<pid>/task/*/stat: no tool needed);
* with ``--tool yappi`` (default): per-function CPU time over every thread (yappi's CPU clock;
  the gateway runs under bench/_yappi_serve.py), self and inclusive, as % of profiled CPU,
  plus self time per package;
* with ``--tool py-spy``: sampled stacks of the unmodified process (low overhead, but its idle
  detection counts aiosqlite's worker waiting on its queue as busy, so read shares with care).

Both tools are investigation aids, not project dependencies::

    .venv/bin/pip install yappi py-spy
    .venv/bin/python bench/hotspots.py [--tool yappi|py-spy] [--seconds 10] [--concurrency 16]
                                      [--scenario nonstream|stream|anthropic] [--json FILE]
                                      [--db sqlite|pg] [--svg FILE]

``--db pg`` runs the gateway on a fresh database on the shared PostgreSQL server (dropped
afterwards) with Redis (BENCH_REDIS, default DB 14). ``--svg`` (py-spy only) records a second
window of the same length as a flame graph.

Profilers slow the gateway (yappi roughly doubles Python call costs): compare shares, and
take absolute CPU per request from bench/run.py. Loopback only; bounded in time and count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import load  # noqa: E402
import sbs_procs  # noqa: E402
from run import QUICK, Bench  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent


# ---- per-thread CPU --------------------------------------------------------------------------
def thread_delta(pid: int, before: dict, after: dict, requests: int) -> list[dict]:
    rows = []
    for tid, (u1, s1) in sorted(after.items()):
        u0, s0 = before.get(tid, (0.0, 0.0))
        du, ds = u1 - u0, s1 - s0
        if du + ds <= 0:
            continue
        rows.append({"thread": "main (event loop)" if tid == pid else f"worker {tid}",
                     "user_us": round(du / requests * 1e6), "sys_us": round(ds / requests * 1e6)})
    return rows


# ---- buckets ---------------------------------------------------------------------------------
def package_of(path: str) -> str:
    """A short bucket for a source file: a2agent.<subpackage>, a library, or a stdlib module."""
    p = path.replace("\\", "/")
    for marker in ("site-packages/", "/src/", "/lib/python3"):
        if marker in p:
            p = p.split(marker, 1)[1]
            if marker == "/lib/python3":
                p = p.split("/", 1)[-1]
            break
    parts = [x for x in p.split("/") if x]
    if not parts:
        return "?"
    if parts[0] == "a2agent" and len(parts) > 2:
        return "a2agent." + parts[1]
    return parts[0].removesuffix(".py")


def short(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


# ---- yappi -----------------------------------------------------------------------------------
def yappi_summary(data: dict, top: int) -> dict:
    funcs = data["funcs"]
    total = sum(f["tsub"] for f in funcs) or 1e-9

    def name(f: dict) -> str:
        where = "builtin" if f["builtin"] and not f["module"].endswith(".py") else f"{short(f['module'])}:{f['line']}"
        return f"{f['name']} ({where})"

    by_self = sorted(funcs, key=lambda f: f["tsub"], reverse=True)[:top]
    by_incl = sorted(funcs, key=lambda f: f["ttot"], reverse=True)
    pkg: Counter = Counter()
    for f in funcs:
        pkg["builtins (C: sqlite3, sockets, locks, ...)" if f["builtin"] and not f["module"].endswith(".py")
            else package_of(f["module"])] += f["tsub"]
    return {
        "profiled_cpu_s": round(total, 3),
        "self": [(name(f), round(100 * f["tsub"] / total, 1), f["ncall"]) for f in by_self],
        "inclusive": [(name(f), round(100 * f["ttot"] / total, 1), f["ncall"]) for f in by_incl
                      if f["ttot"] / total < 0.995][:top],
        "package_self": [(k, round(100 * v / total, 1), None) for k, v in pkg.most_common(top)],
    }


# ---- gc ----------------------------------------------------------------------------------------
def gc_summary(data: dict, requests: int, cpu_s: float) -> dict:
    rows = []
    for gen, g in sorted(data["generations"].items()):
        rows.append((f"generation {gen}: {g['collections']} collections, {g['collected']} objects freed, "
                     f"{g['cpu_s'] / requests * 1e6:.1f} µs per request", round(100 * g["cpu_s"] / cpu_s, 1)
                     if cpu_s else None, None))
    total = sum(g["cpu_s"] for g in data["generations"].values())
    return {"thresholds": data["thresholds"], "gc_us_per_request": round(total / requests * 1e6, 1),
            "gc_share_of_gateway_cpu": round(100 * total / cpu_s, 1) if cpu_s else None,
            "self": rows, "inclusive": [], "package_self": []}


# ---- py-spy ----------------------------------------------------------------------------------
def find_py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def _aiosqlite_idle_frame() -> str:
    """py-spy's frame for aiosqlite's worker parked in `tx.get()` (it is sampled as busy)."""
    import inspect

    import aiosqlite.core as core

    lines, start = inspect.getsourcelines(core._connection_worker_thread)
    n = next(start + i for i, text in enumerate(lines) if "tx.get()" in text)
    return f"_connection_worker_thread (aiosqlite/core.py:{n})"


# Where a sample's CPU belongs: the innermost frame (leaf first) whose function starts with one
# of an area's prefixes decides; a sample of the loop itself (leaf = Runner.run) is uvloop's C
# code: socket reads/writes, epoll, scheduling. Shares are of all sampled CPU, every thread.
AREAS: list[tuple[str, tuple[str, ...]]] = [
    ("thread hand-off (run_in_executor, futures)", ("ThreadPoolExecutor.submit", "_chain_future",
                                                    "_copy_future_state", "_set_state")),
    ("SQLite statements (worker threads)", ("SQLiteHotPath._read", "SQLiteHotPath._apply",
                                            "SQLiteHotPath._conn", "_sqlite_time", "_WorkItem.run")),
    ("thread-pool worker idle loop (queue wait, GIL hand-back)", ("_worker",)),
    ("key lookup (auth)", ("Accounts.authenticate", "authenticate", "KeyHasher")),
    ("admission (concurrency slot, Redis)", ("Admission.", "RedisConcurrency.", "AsyncScript")),
    ("pending record", ("Ledger.open_request",)),
    ("settlement (record, charge, ledger, roll-up)", ("Ledger.settle", "_Writer.", "Relay._settle",
                                                      "PostgresHotPath._run_batch", "PostgresHotPath._apply")),
    ("upstream call (aiohttp client)", ("UpstreamPool.", "UpstreamResponse.", "ClientSession.",
                                        "ClientRequest.", "ResponseHandler.")),
    ("relay, adapters, usage, translation", ("Relay.", "OpenAIAdapter", "AnthropicAdapter", "Translating",
                                             "translate", "Usage")),
    ("body read, JSON parse, validation", ("read_body", "parse_json", "validate", "estimate_input_tokens")),
    ("request handler (rest)", ("_relay", "chat_completions", "messages", "_admitted_model")),
    ("Starlette routing + middleware", ("Starlette.", "ServerErrorMiddleware.", "ExceptionMiddleware.",
                                        "ApiErrorMiddleware.", "Router.", "Route.", "request_response",
                                        "ProxyHeadersMiddleware.", "wrap_app_handling_exceptions", "Request.",
                                        "Response.", "JSONResponse.", "StreamingResponse.", "Headers.")),
    ("uvicorn HTTP protocol", ("RequestResponseCycle.", "HttpToolsProtocol.")),
    ("asyncpg (PostgreSQL protocol)", ("Connection.", "Pool", "Transaction.", "PoolConnectionProxy")),
    ("redis client", ("Redis.", "AbstractConnection.", "ConnectionPool.", "_AsyncRESP", "Encoder.")),
    ("event loop (uvloop C: sockets, epoll, callbacks)", ("Runner.run",)),
]


def area_of(frames: list[str]) -> str:
    for f in reversed(frames):
        fn = f.split(" (", 1)[0]
        for name, prefixes in AREAS:
            if fn.startswith(prefixes):
                return name
    return "other"


def pyspy_summary(raw: Path, top: int) -> dict:
    """py-spy --format raw: 'frame;frame;...;leaf count' per line, root first; frames look like
    'func (path:line)'. Samples of aiosqlite's worker parked on its queue are dropped."""
    self_t: Counter = Counter()
    incl: Counter = Counter()
    pkg: Counter = Counter()
    areas: Counter = Counter()
    total = 0
    idle_leaf = _aiosqlite_idle_frame()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        leaf = frames[-1]
        if leaf == idle_leaf:
            continue
        n = int(count)
        total += n

        def lab(f: str) -> str:
            return f.rsplit(":", 1)[0] + ")" if ":" in f else f

        self_t[lab(leaf)] += n
        areas[area_of(frames)] += n
        pkg[package_of(leaf.rsplit("(", 1)[-1].split(":")[0])] += n
        for f in {lab(x) for x in frames}:
            incl[f] += n
    total = total or 1
    return {
        "samples": total,
        "self": [(k, round(100 * v / total, 1), None) for k, v in self_t.most_common(top)],
        "inclusive": [(k, round(100 * v / total, 1), None) for k, v in incl.most_common(top * 3)
                      if v / total < 0.995][:top],
        "package_self": [(k, round(100 * v / total, 1), None) for k, v in pkg.most_common(top)],
        "areas": [(k, round(100 * v / total, 1), None) for k, v in areas.most_common()],
    }


# ---- driving ---------------------------------------------------------------------------------
async def drive(bench: Bench, scenario: str, concurrency: int, seconds: float, max_requests: int) -> dict:
    _direct, gateway = bench.targets(scenario)
    async with load.session(concurrency) as s:
        errors = load.Errors()
        res = await load.saturate(s, gateway, concurrency, max_requests, seconds, errors)
        res["errors"] = dict(errors.counts)
        return res


def flame(pid: int, args: argparse.Namespace, bench: Bench) -> None:
    """A second window of the same load, recorded by py-spy as a flame graph SVG."""
    args.svg.parent.mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen([find_py_spy(), "record", "--pid", str(pid), "--rate", str(args.rate),
                            "--format", "flamegraph", "--output", str(args.svg), "--nonblocking",
                            "--duration", str(int(args.seconds) + 2)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)
    asyncio.run(drive(bench, args.scenario, args.concurrency, args.seconds, args.max_requests))
    try:
        spy.communicate(timeout=args.seconds + 60)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.communicate()


def wait_file(path: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", choices=("yappi", "py-spy", "gc", "phases"), default="yappi",
                    help="gc: time the cyclic garbage collector per generation; phases: wall time of "
                         "each per-request phase (key lookup, admission, pending record, upstream, "
                         "settlement); neither is a profiler")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--max-requests", type=int, default=20000)
    ap.add_argument("--scenario", choices=("nonstream", "stream", "anthropic"), default="nonstream")
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--json", type=Path, help="also write the summary here")
    ap.add_argument("--db", choices=("sqlite", "pg"), default="sqlite",
                    help="pg: PostgreSQL (a fresh database on the shared server) + Redis")
    ap.add_argument("--svg", type=Path, help="py-spy: also record a flame graph (second window)")
    ap.add_argument("--native", action="store_true",
                    help="py-spy: sample C frames too (pauses the process per sample: slower)")
    ap.add_argument("--raw", type=Path, help="py-spy: keep the raw stacks here")
    args = ap.parse_args(argv)
    if args.tool == "py-spy" and find_py_spy() is None:
        ap.error("py-spy not found: .venv/bin/pip install py-spy")
    if args.tool == "yappi":
        try:
            import yappi  # noqa: F401
        except ImportError:
            ap.error("yappi not found: .venv/bin/pip install yappi")

    data_dir = Path(tempfile.mkdtemp(prefix="a2agent-prof-"))
    out = data_dir / "profile.json"
    upstream = harness.spawn_upstream()
    gw = None
    pg = sbs_procs.PgDatabase() if args.db == "pg" else None
    env: dict[str, str] = {}
    if pg is not None:
        pg.create()
        env = {"A2AGENT_DATABASE_URL": pg.url, "A2AGENT_REDIS_URL": sbs_procs.REDIS_URL}
    try:
        key = harness.prepare(data_dir, upstream, env)
        if args.tool in ("yappi", "gc", "phases"):
            launcher = BENCH_DIR / {"yappi": "_yappi_serve.py", "gc": "_gc_serve.py",
                                    "phases": "_phase_serve.py"}[args.tool]
            gw = harness.start_gateway(data_dir, launcher=[sys.executable, str(launcher)],
                                       extra_env={"A2AGENT_BENCH_PROFILE_OUT": str(out), **env})
        else:
            gw = harness.start_gateway(data_dir, extra_env=env)
        bench = Bench(QUICK, gw, upstream.url, key, harness.Records(data_dir / "a2agent.db"))
        asyncio.run(drive(bench, args.scenario, args.concurrency, 3.0, 500))  # warm-up, not profiled
        time.sleep(0.5)
        spy = None
        if args.tool in ("yappi", "gc", "phases"):
            os.kill(gw.pid, signal.SIGUSR1)
        else:
            raw = data_dir / "stacks.txt"
            mode = ["--native"] if args.native else ["--nonblocking"]
            spy = subprocess.Popen([find_py_spy(), "record", "--pid", str(gw.pid), "--rate", str(args.rate),
                                    "--format", "raw", "--output", str(raw), *mode,
                                    "--duration", str(int(args.seconds) + 2)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        c0, t0 = gw.cpu(), harness.thread_cpu(gw.pid)
        res = asyncio.run(drive(bench, args.scenario, args.concurrency, args.seconds, args.max_requests))
        if pg is None:
            bench.records.wait_settled(1, timeout=5)
        time.sleep(0.5 if pg is None else 1.5)  # let the last settlements finish inside the window
        c1, t1 = gw.cpu(), harness.thread_cpu(gw.pid)
        per_thread = thread_delta(gw.pid, t0, t1, max(res["ok"], 1))
        if args.tool in ("yappi", "gc", "phases"):
            os.kill(gw.pid, signal.SIGUSR2)
            if not wait_file(out, 60):
                print("the profiled gateway wrote no profile", file=sys.stderr)
                return 1
            if args.tool == "gc":
                summary = gc_summary(json.loads(out.read_text()), max(res["ok"], 1), c1 - c0)
            elif args.tool == "phases":
                phases = json.loads(out.read_text())
                summary = {"phases": phases, "inclusive": [], "package_self": [],
                           "self": [(f"{k}: n {v['n']}, mean {v['mean_ms']} ms, p50 {v['p50_ms']} ms, "
                                     f"p99 {v['p99_ms']} ms", None, None) for k, v in phases.items()]}
            else:
                summary = yappi_summary(json.loads(out.read_text()), args.top)
        else:
            try:
                _, err = spy.communicate(timeout=args.seconds + 60)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
            if spy.returncode != 0 or not raw.exists():
                print(f"py-spy failed ({spy.returncode}): {err.strip()[-800:]}", file=sys.stderr)
                return 1
            summary = pyspy_summary(raw, args.top)
            if args.raw:
                shutil.copyfile(raw, args.raw)
            if args.svg:
                flame(gw.pid, args, bench)
    finally:
        if gw is not None:
            gw.stop()
        upstream.close()
        if pg is not None:
            pg.drop()
        shutil.rmtree(data_dir, ignore_errors=True)

    report = {"tool": args.tool, "db": args.db, "scenario": args.scenario, "concurrency": args.concurrency,
              "requests_ok": res["ok"], "rps": round(res["rps"], 1), "errors": res["errors"],
              "gateway_cpu_us_per_request_under_profiler": round((c1 - c0) / max(res["ok"], 1) * 1e6),
              "per_thread": per_thread, **summary}
    print(f"{args.scenario} at concurrency {args.concurrency} under {args.tool}: {res['ok']} requests "
          f"({res['rps']:.0f}/s), errors {res['errors']}; gateway CPU "
          f"{report['gateway_cpu_us_per_request_under_profiler']} µs per request under the profiler")
    if args.tool == "gc":
        print(f"cyclic GC: {summary['gc_us_per_request']} µs per request, {summary['gc_share_of_gateway_cpu']} % of "
              f"the gateway's CPU (thresholds {summary['thresholds']})")
    print("\nGateway CPU per request by thread (/proc, profiler included):")
    for r in per_thread:
        print(f"  {r['thread']:<20} user {r['user_us']:6} µs   sys {r['sys_us']:6} µs")
    sections = [("Self time", "self"), ("Inclusive time", "inclusive"), ("Self time by package", "package_self")]
    if "areas" in summary:
        sections.append(("By area (innermost matching frame; bench/hotspots.py AREAS)", "areas"))
    for title, key in sections:
        print(f"\n{title} (% of profiled CPU{', calls' if args.tool == 'yappi' and key != 'package_self' else ''}):")
        for name, pct, calls in summary[key]:
            print(f"  {'' if pct is None else f'{pct:5.1f}%'}  {name}" + (f"   [{calls}]" if calls is not None else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
