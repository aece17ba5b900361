"""Attribute the gateway's CPU per request by ablation: the same load against the real gateway
process with parts of its per-request database work stubbed out (bench/_ablate_serve.py),
one variant after another, and the differences in CPU per request:

    key lookup        = full − auth-cached
    settlement        = full − settle-stubbed
    pending record    = settle-stubbed − open+settle-stubbed
    everything else   = auth+open+settle-stubbed   (HTTP edge, relay, upstream client, JSON)

    .venv/bin/python bench/ablate.py [--passes 2] [--n1 600] [--n16 2000]

Stubbed variants do not bill: this is an investigation tool, never a configuration.
Loopback only; every load loop bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import load  # noqa: E402
from run import Bench, QUICK  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
VARIANTS = [
    ("full", ""),
    ("auth-cached", "auth"),
    ("settle-stubbed", "settle"),
    ("open+settle-stubbed", "open,settle"),
    ("auth+open+settle-stubbed", "auth,open,settle"),
]


async def measure(gw: harness.Gateway, target: load.Target, n1: int, n16: int) -> dict:
    out = {}
    async with load.session(1) as s1, load.session(16) as s16:
        await load.sequential(s1, target, 100, load.Errors())
        await load.saturate(s16, target, 16, 300, 10, load.Errors())
        await asyncio.sleep(0.5)
        for label, run in (("c1", lambda e: load.sequential(s1, target, n1, e)),
                           ("c16", lambda e: load.saturate(s16, target, 16, n16, 30, e))):
            errors = load.Errors()
            c0, t0 = gw.cpu(), time.perf_counter()
            res = await run(errors)
            await asyncio.sleep(0.3)  # background settlement of the last requests
            c1, t1 = gw.cpu(), time.perf_counter()
            n = len(res) if isinstance(res, list) else res["ok"]
            out[label] = {"requests": n, "errors": errors.total, "cpu_s": c1 - c0,
                          "us_per_request": (c1 - c0) / max(n, 1) * 1e6,
                          "rps": None if isinstance(res, list) else res["rps"],
                          "wall_s": t1 - t0}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passes", type=int, default=2, help="each pass runs every variant once")
    ap.add_argument("--n1", type=int, default=600, help="requests at concurrency 1 per variant and pass")
    ap.add_argument("--n16", type=int, default=2000, help="requests at concurrency 16 per variant and pass")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    data_dir = Path(tempfile.mkdtemp(prefix="a2agent-ablate-"))
    upstream = harness.spawn_upstream()
    results: dict[str, dict[str, list]] = {name: {"c1": [], "c16": [], "rps16": []} for name, _ in VARIANTS}
    try:
        key = harness.prepare(data_dir, upstream)
        for p in range(args.passes):
            order = VARIANTS if p % 2 == 0 else list(reversed(VARIANTS))
            for name, what in order:
                gw = harness.start_gateway(data_dir, launcher=[sys.executable, str(BENCH_DIR / "_ablate_serve.py")],
                                           extra_env={"A2AGENT_BENCH_ABLATE": what})
                try:
                    bench = Bench(QUICK, gw, upstream.url, key, harness.Records(data_dir / "a2agent.db"))
                    _direct, target = bench.targets("nonstream")
                    r = asyncio.run(measure(gw, target, args.n1, args.n16))
                finally:
                    gw.stop()
                if r["c1"]["errors"] or r["c16"]["errors"]:
                    print(f"{name}: errors {r['c1']['errors']}/{r['c16']['errors']}", file=sys.stderr)
                results[name]["c1"].append(r["c1"]["us_per_request"])
                results[name]["c16"].append(r["c16"]["us_per_request"])
                results[name]["rps16"].append(r["c16"]["rps"])
                print(f"pass {p + 1} {name:<26} c1 {r['c1']['us_per_request']:7.0f} µs/req   "
                      f"c16 {r['c16']['us_per_request']:7.0f} µs/req  {r['c16']['rps']:6.0f} req/s", flush=True)
    finally:
        upstream.close()
        shutil.rmtree(data_dir, ignore_errors=True)

    mean = {n: {k: sum(v) / len(v) for k, v in d.items()} for n, d in results.items()}
    parts = {}
    for c in ("c1", "c16"):
        m = {n: mean[n][c] for n in mean}
        parts[c] = {
            "total": m["full"],
            "key lookup (auth SELECT)": m["full"] - m["auth-cached"],
            "settlement transaction": m["full"] - m["settle-stubbed"],
            "pending record INSERT": m["settle-stubbed"] - m["open+settle-stubbed"],
            "everything else": m["auth+open+settle-stubbed"],
        }
    print("\nGateway CPU per OpenAI non-stream request, by part (µs; mean of passes; differences of noisy"
          " means, so parts need not add up exactly):")
    print(f"  {'part':<28} {'c=1':>8} {'c=16':>8}")
    for part in parts["c1"]:
        a, b = parts["c1"][part], parts["c16"][part]
        print(f"  {part:<28} {a:8.0f} {b:8.0f}   ({100 * a / parts['c1']['total']:3.0f}% / "
              f"{100 * b / parts['c16']['total']:3.0f}%)")
    print(f"\n  throughput at c=16: full {mean['full']['rps16']:.0f} req/s, no per-request DB work "
          f"{mean['auth+open+settle-stubbed']['rps16']:.0f} req/s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"raw": results, "mean": mean, "parts_us": parts}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
