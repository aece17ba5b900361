"""A2Agent data-plane benchmark: the same requests straight to a fast scripted upstream and
through the gateway, alternated in one run, with auth, billing and request records on.

    .venv/bin/python bench/run.py [--quick] [--pin] [--keep] [--out FILE]

Reports added latency (p50/p99 at concurrency 1), throughput at 16/64/256, time to first byte
for streams, and the gateway process's CPU time per request; then checks the money
(`a2agent db verify`, one settled record per gateway request). Writes bench/results/latest.json.
See bench/README.md for what each number means and its caveats.
"""

from __future__ import annotations

import argparse
import asyncio
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

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402
import load  # noqa: E402
from harness import ANTHROPIC_MODEL, OPENAI_MODEL, Records  # noqa: E402
from load import Errors, Target, percentile  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent

TARGETS = {"added_p50_ms": 1.0, "added_p99_ms": 3.0, "cpu_us_per_nonstream_request": 500.0,
           # the Responses lane (translated to a Chat channel) against the Chat passthrough stream
           "responses_cpu_ratio": 1.5}


@dataclass(frozen=True)
class Plan:
    warmup: int  # requests each way before a c=1 scenario's rounds
    rounds: int  # alternated direct/gateway rounds per c=1 scenario
    per_round: int  # requests per round each way (non-stream, c=1)
    stream_per_round: int
    anthropic_per_round: int
    tput_rounds: int  # alternated rounds per concurrency point
    tput_requests: int  # bound per round each way
    tput_seconds: float  # bound per round each way
    idle_seconds: float  # each idle-baseline window (one before, one after)
    concurrencies: tuple[int, ...] = (16, 64, 256)


FULL = Plan(warmup=200, rounds=5, per_round=400, stream_per_round=200, anthropic_per_round=200,
            tput_rounds=2, tput_requests=2000, tput_seconds=3.0, idle_seconds=4.0)
QUICK = Plan(warmup=50, rounds=2, per_round=100, stream_per_round=50, anthropic_per_round=50,
             tput_rounds=1, tput_requests=400, tput_seconds=1.0, idle_seconds=1.5)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def stats_ms(samples: list[float]) -> dict:
    if not samples:
        return {"n": 0}
    return {"n": len(samples), "p50_ms": ms(percentile(samples, 50)), "p99_ms": ms(percentile(samples, 99)),
            "mean_ms": ms(sum(samples) / len(samples))}


class Bench:
    def __init__(self, plan: Plan, gw: harness.Gateway, upstream_url: str, key: str, records: Records) -> None:
        self.plan = plan
        self.gw = gw
        self.upstream_url = upstream_url
        self.key = key
        self.records = records
        self.gw_sent = 0  # every request sent to the gateway, warm-ups included
        self.idle_rates: list[float] = []
        self.cpu_windows: list[dict] = []  # raw CPU windows, idle correction applied at the end
        self.settle_waits: list[float] = []

    # ---- targets ----------------------------------------------------------------------------
    def targets(self, scenario: str) -> tuple[Target, Target]:
        auth = {"authorization": f"Bearer {self.key}", "content-type": "application/json"}
        if scenario == "anthropic":
            body = orjson.dumps({"model": ANTHROPIC_MODEL, "max_tokens": 64,
                                 "messages": [{"role": "user", "content": "hello"}]})
            headers = {"x-api-key": self.key, "anthropic-version": "2023-06-01",
                       "content-type": "application/json"}
            return (Target("direct", self.upstream_url + "/v1/messages", headers, body),
                    Target("gateway", self.gw.url + "/v1/messages", headers, body))
        if scenario == "responses":
            # a Responses stream translated to the OpenAI Chat channel; direct = the upstream's
            # own Responses endpoint with the same body
            body = orjson.dumps({"model": OPENAI_MODEL, "input": "hello", "stream": True})
            return (Target("direct", self.upstream_url + "/v1/responses", auth, body, True),
                    Target("gateway", self.gw.url + "/v1/responses", auth, body, True))
        stream = scenario == "stream"
        payload: dict = {"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "hello"}]}
        if stream:
            payload["stream"] = True
        body = orjson.dumps(payload)
        return (Target("direct", self.upstream_url + "/v1/chat/completions", auth, body, stream),
                Target("gateway", self.gw.url + "/v1/chat/completions", auth, body, stream))

    # ---- gateway CPU accounting ---------------------------------------------------------------
    async def idle_baseline(self) -> None:
        await asyncio.sleep(0.2)
        c0, t0 = self.gw.cpu(), time.monotonic()
        await asyncio.sleep(self.plan.idle_seconds)
        c1, t1 = self.gw.cpu(), time.monotonic()
        self.idle_rates.append((c1 - c0) / (t1 - t0))

    async def on_gateway(self, label: str, n_expected: int, coro):  # type: ignore[no-untyped-def]
        """Run gateway work, wait until its records are settled (that CPU belongs to it too),
        and keep the CPU window for this label."""
        c0, t0, th0 = self.gw.cpu(), time.monotonic(), harness.thread_cpu(self.gw.pid)
        result = await coro
        n = n_expected if not isinstance(result, dict) else result["sent"]
        self.gw_sent += n
        waited = await asyncio.to_thread(self.records.wait_settled, self.gw_sent)
        c1, t1, th1 = self.gw.cpu(), time.monotonic(), harness.thread_cpu(self.gw.pid)
        self.settle_waits.append(waited)
        split = {"main_user_s": 0.0, "main_sys_s": 0.0, "other_user_s": 0.0, "other_sys_s": 0.0}
        for tid, (u, s) in th1.items():
            u0, s0 = th0.get(tid, (0.0, 0.0))
            who = "main" if tid == self.gw.pid else "other"
            split[f"{who}_user_s"] += u - u0
            split[f"{who}_sys_s"] += s - s0
        self.cpu_windows.append({"label": label, "cpu_s": c1 - c0, "wall_s": t1 - t0, "requests": n, **split})
        return result

    def cpu_per_request(self) -> dict[str, dict]:
        idle = sum(self.idle_rates) / len(self.idle_rates) if self.idle_rates else 0.0
        acc: dict[str, dict] = {}
        for w in self.cpu_windows:
            a = acc.setdefault(w["label"], dict.fromkeys(w, 0.0))
            for k, v in w.items():
                if k != "label":
                    a[k] += v
        out = {}
        for label, a in acc.items():
            net = max(a["cpu_s"] - idle * a["wall_s"], 0.0)
            n = int(a["requests"])

            def per(x: float, n: int = n) -> float | None:
                return round(x / n * 1e6, 1) if n else None

            out[label] = {"requests": n, "cpu_s": round(a["cpu_s"], 3),
                          "idle_correction_s": round(idle * a["wall_s"], 4),
                          "us_per_request": per(net),
                          # not idle-corrected: the event-loop thread vs the others (aiosqlite's)
                          "event_loop_thread_us": {"user": per(a["main_user_s"]), "sys": per(a["main_sys_s"])},
                          "other_threads_us": {"user": per(a["other_user_s"]), "sys": per(a["other_sys_s"])}}
        return out

    # ---- scenarios ------------------------------------------------------------------------------
    async def latency(self, scenario: str, per_round: int) -> dict:
        direct, gateway = self.targets(scenario)
        errors = {"direct": Errors(), "gateway": Errors()}
        samples: dict[str, list] = {"direct": [], "gateway": []}
        async with load.session(1) as sd, load.session(1) as sg:
            await load.check(sd, direct)
            await self.on_gateway(f"{scenario}_c1_check", 1, load.check(sg, gateway))
            await load.sequential(sd, direct, self.plan.warmup, Errors())
            await self.on_gateway(f"{scenario}_c1_warmup", self.plan.warmup,
                                  load.sequential(sg, gateway, self.plan.warmup, errors["gateway"]))
            for r in range(self.plan.rounds):
                order = [(direct, sd), (gateway, sg)] if r % 2 == 0 else [(gateway, sg), (direct, sd)]
                for t, s in order:
                    run = load.sequential(s, t, per_round, errors[t.name])
                    if t.name == "gateway":
                        got = await self.on_gateway(f"{scenario}_c1", per_round, run)
                    else:
                        got = await run
                    samples[t.name].extend(got)
        out: dict = {"errors": {k: dict(v.counts) for k, v in errors.items()}}
        if scenario in ("stream", "responses"):
            for which, idx in (("ttfb", 0), ("total", 1)):
                d = stats_ms([x[idx] for x in samples["direct"]])
                g = stats_ms([x[idx] for x in samples["gateway"]])
                out[which] = {"direct": d, "gateway": g, "added_p50_ms": round(g["p50_ms"] - d["p50_ms"], 3),
                              "added_p99_ms": round(g["p99_ms"] - d["p99_ms"], 3)}
        else:
            d, g = stats_ms(samples["direct"]), stats_ms(samples["gateway"])
            out.update({"direct": d, "gateway": g, "added_p50_ms": round(g["p50_ms"] - d["p50_ms"], 3),
                        "added_p99_ms": round(g["p99_ms"] - d["p99_ms"], 3)})
        return out

    async def throughput(self, concurrency: int) -> dict:
        direct, gateway = self.targets("nonstream")
        p = self.plan
        errors = {"direct": Errors(), "gateway": Errors()}
        totals = {"direct": {"ok": 0, "sent": 0, "elapsed_s": 0.0}, "gateway": {"ok": 0, "sent": 0, "elapsed_s": 0.0}}
        async with load.session(concurrency) as sd, load.session(concurrency) as sg:
            # open the pools' connections first (not measured)
            warm = min(2 * concurrency, p.tput_requests)
            await load.saturate(sd, direct, concurrency, warm, p.tput_seconds, Errors())
            await self.on_gateway(f"tput_c{concurrency}_warmup", 0,
                                  load.saturate(sg, gateway, concurrency, warm, p.tput_seconds, errors["gateway"]))
            for r in range(p.tput_rounds):
                order = [(direct, sd), (gateway, sg)] if r % 2 == 0 else [(gateway, sg), (direct, sd)]
                for t, s in order:
                    run = load.saturate(s, t, concurrency, p.tput_requests, p.tput_seconds, errors[t.name])
                    res = await (self.on_gateway(f"tput_c{concurrency}", 0, run) if t.name == "gateway" else run)
                    for k in ("ok", "sent", "elapsed_s"):
                        totals[t.name][k] += res[k]
        d = totals["direct"]["ok"] / totals["direct"]["elapsed_s"]
        g = totals["gateway"]["ok"] / totals["gateway"]["elapsed_s"]
        return {"concurrency": concurrency, "direct_rps": round(d, 1), "gateway_rps": round(g, 1),
                "ratio": round(g / d, 3) if d else None,
                "requests": {k: v["sent"] for k, v in totals.items()},
                "errors": {k: dict(v.counts) for k, v in errors.items()}}

    async def run(self) -> dict:
        await self.idle_baseline()
        res: dict = {"latency_c1": {}, "throughput": []}
        res["latency_c1"]["openai_nonstream"] = await self.latency("nonstream", self.plan.per_round)
        res["latency_c1"]["openai_stream"] = await self.latency("stream", self.plan.stream_per_round)
        res["latency_c1"]["anthropic_nonstream"] = await self.latency("anthropic", self.plan.anthropic_per_round)
        res["latency_c1"]["responses_stream"] = await self.latency("responses", self.plan.stream_per_round)
        for c in self.plan.concurrencies:
            res["throughput"].append(await self.throughput(c))
        await self.idle_baseline()
        res["gateway_cpu"] = {"idle_cpu_fraction": [round(x, 5) for x in self.idle_rates],
                              "per_scenario": self.cpu_per_request()}
        res["settle_wait_s_max"] = round(max(self.settle_waits, default=0.0), 3)
        return res


# ---- money check, report ---------------------------------------------------------------------
def money(data_dir: Path, records: Records, gw_sent: int) -> dict:
    n, cost = records.settled()
    statuses = records.by_status()
    verify = harness.cli(data_dir, "db", "verify", check=False)
    return {"gateway_requests_sent": gw_sent, "settled_records": n, "cost_micro_sum": cost,
            "records_by_status": statuses, "records_match": n == gw_sent,
            "db_verify_exit": verify.returncode,
            "db_verify_output": (verify.stdout + verify.stderr).strip()[-500:]}


def evaluate(res: dict) -> dict:
    lat = res["latency_c1"]["openai_nonstream"]
    per = res["gateway_cpu"]["per_scenario"]
    cpu = per["nonstream_c1"]["us_per_request"]
    resp, passthrough = per["responses_c1"]["us_per_request"], per["stream_c1"]["us_per_request"]
    ratio = round(resp / passthrough, 3) if resp is not None and passthrough else None
    return {
        "responses_cpu_ratio": {"target": TARGETS["responses_cpu_ratio"], "measured": ratio,
                                "met": ratio is not None and ratio <= TARGETS["responses_cpu_ratio"]},
        "added_p50_ms": {"target": TARGETS["added_p50_ms"], "measured": lat["added_p50_ms"],
                         "met": lat["added_p50_ms"] <= TARGETS["added_p50_ms"]},
        "added_p99_ms": {"target": TARGETS["added_p99_ms"], "measured": lat["added_p99_ms"],
                         "met": lat["added_p99_ms"] <= TARGETS["added_p99_ms"]},
        "cpu_us_per_nonstream_request": {"target": TARGETS["cpu_us_per_nonstream_request"], "measured": cpu,
                                         "met": cpu is not None and cpu <= TARGETS["cpu_us_per_nonstream_request"]},
    }


def render(report: dict) -> str:
    res = report["results"]
    lines = [f"A2Agent data-plane benchmark ({report['meta']['mode']}, pin={report['meta']['pin']}, "
             f"loadavg before {report['meta']['loadavg_before']})", ""]
    lines.append("Latency at concurrency 1 (ms)        direct p50/p99     gateway p50/p99    added p50/p99")
    rows = [("OpenAI non-stream", res["latency_c1"]["openai_nonstream"]),
            ("Anthropic non-stream", res["latency_c1"]["anthropic_nonstream"]),
            ("OpenAI stream, first byte", res["latency_c1"]["openai_stream"]["ttfb"]),
            ("OpenAI stream, total", res["latency_c1"]["openai_stream"]["total"]),
            ("Responses stream (to Chat), total", res["latency_c1"]["responses_stream"]["total"])]
    for name, r in rows:
        d, g = r["direct"], r["gateway"]
        lines.append(f"  {name:<34} {d['p50_ms']:7.3f} /{d['p99_ms']:7.3f}   {g['p50_ms']:7.3f} /{g['p99_ms']:7.3f}"
                     f"   {r['added_p50_ms']:7.3f} /{r['added_p99_ms']:7.3f}")
    lines += ["", "Throughput, OpenAI non-stream (req/s)   direct   gateway   gateway/direct   errors (d/g)"]
    for t in res["throughput"]:
        ed, eg = sum(t["errors"]["direct"].values()), sum(t["errors"]["gateway"].values())
        lines.append(f"  concurrency {t['concurrency']:<4}                 {t['direct_rps']:8.0f}  {t['gateway_rps']:8.0f}"
                     f"   {t['ratio']:14.3f}   {ed}/{eg}")
    lines += ["", "Gateway CPU per request (µs)      total*   event-loop thread   other threads (sqlite)"]
    lines.append("                                            user / sys          user / sys")
    for label, c in res["gateway_cpu"]["per_scenario"].items():
        if label.endswith(("_check", "_warmup")):
            continue
        el, ot = c["event_loop_thread_us"], c["other_threads_us"]
        lines.append(f"  {label:<22} {c['us_per_request']:>12.0f}   {el['user']:7.0f} /{el['sys']:6.0f}"
                     f"       {ot['user']:7.0f} /{ot['sys']:6.0f}    ({c['requests']} requests)")
    lines.append("  * idle baseline subtracted; the thread split is not")
    m = report["money"]
    lines += ["", f"Money: {m['settled_records']} settled records for {m['gateway_requests_sent']} gateway requests "
                  f"({'match' if m['records_match'] else 'MISMATCH'}); cost {m['cost_micro_sum']} µUSD; "
                  f"db verify exit {m['db_verify_exit']}; statuses {m['records_by_status']}"]
    lines += ["", "Targets (OpenAI non-stream, c=1; Responses CPU ÷ Chat passthrough stream CPU):"]
    for name, t in report["targets"].items():
        lines.append(f"  {name:<30} ≤ {t['target']:<6} measured {t['measured']:<9} {'MET' if t['met'] else 'NOT MET'}")
    return "\n".join(lines)


def git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=BENCH_DIR, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small counts (about 30 s), for debugging")
    ap.add_argument("--pin", action="store_true",
                    help="pin the gateway to CPU 1 and the upstream + load generator to CPU 0")
    ap.add_argument("--keep", action="store_true", help="keep the temporary data dir (path is printed)")
    ap.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "latest.json")
    args = ap.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.pin and (os.cpu_count() or 1) < 2:
        ap.error("--pin needs at least 2 CPUs")

    started = time.monotonic()
    data_dir = Path(tempfile.mkdtemp(prefix="a2agent-bench-"))
    loadavg_before = open("/proc/loadavg").read().split()[:3]
    up_cpus, gw_cpus = ({0}, {1}) if args.pin else (None, None)
    upstream = harness.spawn_upstream(up_cpus)
    gw = None
    try:
        print(f"upstream {upstream.url}; preparing {data_dir} ...", flush=True)
        key = harness.prepare(data_dir, upstream)
        gw = harness.start_gateway(data_dir, gw_cpus)
        print(f"gateway {gw.url} (pid {gw.pid}); running the {'quick' if args.quick else 'full'} plan ...",
              flush=True)
        if args.pin:
            os.sched_setaffinity(0, up_cpus)
        records = Records(data_dir / "a2agent.db")
        bench = Bench(plan, gw, upstream.url, key, records)
        try:
            import uvloop

            results = uvloop.run(bench.run())
        except ImportError:
            results = asyncio.run(bench.run())
        exit_code = gw.stop()
        report = {
            "meta": {
                "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "mode": "quick" if args.quick else "full",
                "pin": args.pin,
                "git_head": git("rev-parse", "HEAD"),
                # uncommitted changes to the gateway's code that this run measured
                "src_changes": (git("status", "--porcelain", "--", "src") or "").splitlines(),
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "loadavg_before": loadavg_before,
                "loadavg_after": open("/proc/loadavg").read().split()[:3],
                "plan": plan.__dict__,
                "duration_s": None,
                "gateway_exit_code": exit_code,
            },
            "results": results,
            "money": money(data_dir, records, bench.gw_sent),
        }
        report["targets"] = evaluate(results)
        report["meta"]["duration_s"] = round(time.monotonic() - started, 1)
    finally:
        if gw is not None:
            gw.stop()
        upstream.close()
        if args.keep:
            print(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print()
    print(render(report))
    print(f"\nwrote {args.out} in {report['meta']['duration_s']} s")
    m = report["money"]
    errors = sum(sum(t["errors"][k].values()) for t in results["throughput"] for k in ("direct", "gateway"))
    errors += sum(sum(v.values()) for r in results["latency_c1"].values() for v in r["errors"].values())
    if not m["records_match"] or m["db_verify_exit"] != 0 or errors:
        print("FAILED: errors or a money mismatch (see above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
