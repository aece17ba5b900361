"""Summary, targets and text table for bench/side_by_side.py: every figure as a ratio to the
floor (the bare proxy) from the same run."""

from __future__ import annotations

ROWS = ("floor", "sqlite", "pg", "w2")
LABEL = {"floor": "bare proxy (floor)", "sqlite": "A2Agent, SQLite", "pg": "A2Agent, PostgreSQL + Redis",
         "w2": "A2Agent, SQLite, --workers 2", "direct": "direct (upstream)"}


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return round(a / b, 2)


def _side(points: dict, lane: str, mode: str, c: int, side: str) -> dict:
    return points.get(f"{lane}_{mode}_c{c}", {}).get("sides", {}).get(side, {})


def _db_us(row: dict) -> float | None:
    db = row.get("db_us")
    return round(sum(db.values()), 1) if db else None


def lane_table(res: dict, lane: str, mode: str) -> dict:
    pts = res["points"]
    d1 = _side(pts, lane, mode, 1, "direct")
    floor1, floor16, floor64 = (_side(pts, lane, mode, c, "floor") for c in (1, 16, 64))
    out = {}
    f_add50 = f_add99 = None
    for side in ROWS:
        s1, s16, s64 = (_side(pts, lane, mode, c, side) for c in (1, 16, 64))
        have = s1.get("p50_ms") is not None and d1.get("p50_ms") is not None
        add50 = round(s1["p50_ms"] - d1["p50_ms"], 3) if have else None
        add99 = round(s1["p99_ms"] - d1["p99_ms"], 3) if have else None
        if side == "floor":
            f_add50, f_add99 = add50, add99
        row = {
            "cpu_us_c16": s16.get("cpu_us"), "cpu_x": _ratio(s16.get("cpu_us"), floor16.get("cpu_us")),
            "cpu_us_c1": s1.get("cpu_us"),
            "added_p50_ms_c1": add50, "added_p50_x": _ratio(add50, f_add50),
            "added_p99_ms_c1": add99, "added_p99_x": _ratio(add99, f_add99),
            "rps_c64": s64.get("rps"), "rps_x": _ratio(s64.get("rps"), floor64.get("rps")),
            "p99_ms_c64": s64.get("p99_ms"), "p99_x": _ratio(s64.get("p99_ms"), floor64.get("p99_ms")),
            "peak_rss_mib": res["peak_rss_mib"].get(side),
            "rss_x": _ratio(res["peak_rss_mib"].get(side), res["peak_rss_mib"].get("floor")),
        }
        if side == "pg":
            row["db_us_c16"] = _db_us(s16)
            row["db_detail_c16"] = s16.get("db_us")
        out[side] = row
    out["direct"] = {"p50_ms_c1": d1.get("p50_ms"), "p99_ms_c1": d1.get("p99_ms"),
                     "rps_c64": _side(pts, lane, mode, 64, "direct").get("rps")}
    return out


def _target(name: str, measured: float | None, limit: float, le: bool = True) -> dict:
    met = None if measured is None else (measured <= limit if le else measured >= limit)
    return {"target": name, "limit": limit, "measured": measured, "met": met}


def evaluate(tables: dict) -> list[dict]:
    """The issue's targets, on this run's figures."""
    o = tables.get("openai_nonstream", {})
    sq, pg, w2 = o.get("sqlite", {}), o.get("pg", {}), o.get("w2", {})
    t = [
        _target("SQLite CPU/request at c=16, x floor", sq.get("cpu_x"), 2.5),
        _target("SQLite added p50 at c=1, ms", sq.get("added_p50_ms_c1"), 0.4),
        _target("SQLite RPS at c=64, x floor", sq.get("rps_x"), 0.4, le=False),
        _target("SQLite p99 at c=64, x floor p99", sq.get("p99_x"), 3.0),
        _target("PG+Redis gateway CPU/request, x SQLite", _ratio(pg.get("cpu_us_c16"), sq.get("cpu_us_c16")), 1.3),
        _target("PG+Redis gateway+database CPU, x SQLite",
                _ratio((pg.get("cpu_us_c16") or 0) + (pg.get("db_us_c16") or 0) if pg.get("cpu_us_c16") else None,
                       sq.get("cpu_us_c16")), 2.0),
        _target("PG+Redis added p50 at c=1, ms", pg.get("added_p50_ms_c1"), 1.0),
        _target("--workers 2 RPS at c=64, x one worker", _ratio(w2.get("rps_c64"), sq.get("rps_c64")), 1.6, le=False),
    ]
    st = tables.get("openai_stream", {}).get("sqlite", {})
    t.append(_target("SQLite stream CPU, x non-stream request", _ratio(st.get("cpu_us_c16"), sq.get("cpu_us_c16")), 1.5))
    tr = tables.get("translate_nonstream", {}).get("sqlite", {})
    an = tables.get("anthropic_nonstream", {}).get("sqlite", {})
    t.append(_target("translation CPU, x Anthropic passthrough", _ratio(tr.get("cpu_us_c16"), an.get("cpu_us_c16")), 1.5))
    return t


def summary(res: dict) -> dict:
    tables = {f"{lane}_{mode}": lane_table(res, lane, mode)
              for lane in res["lanes"] for mode in ("nonstream", "stream")}
    return {"tables": tables, "targets": evaluate(tables)}


def _f(v: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if v is None else fmt.format(v)


def render(report: dict) -> str:
    meta, res, summ = report["meta"], report["results"], report["summary"]
    lines = [f"A2Agent side-by-side benchmark ({meta['mode']}; git {str(meta['git_head'])[:10]}; "
             f"loadavg before {' '.join(meta['loadavg_before'])}, after {' '.join(meta['loadavg_after'])})"]
    if res["skipped_lanes"]:
        lines.append(f"skipped lanes: {res['skipped_lanes']}")
    for name, tab in summ["tables"].items():
        d = tab["direct"]
        lines += ["", f"{name}  (direct: p50 {_f(d['p50_ms_c1'], '{:.3f}')} ms, p99 {_f(d['p99_ms_c1'], '{:.3f}')} ms"
                      f" at c=1; {_f(d['rps_c64'])} req/s at c=64)",
                  f"  {'':31}{'CPU/req c=16':>17}{'added p50 c=1':>19}{'added p99 c=1':>19}"
                  f"{'RPS c=64':>15}{'p99 c=64':>19}{'peak RSS':>15}"]
        for side in ROWS:
            r = tab[side]
            lines.append(
                f"  {LABEL[side]:<31}{_f(r['cpu_us_c16']):>8} µs {_f(r['cpu_x'], '{:.2f}'):>5}x"
                f"{_f(r['added_p50_ms_c1'], '{:.3f}'):>9} ms {_f(r['added_p50_x'], '{:.1f}'):>5}x"
                f"{_f(r['added_p99_ms_c1'], '{:.3f}'):>9} ms {_f(r['added_p99_x'], '{:.1f}'):>5}x"
                f"{_f(r['rps_c64']):>8} {_f(r['rps_x'], '{:.2f}'):>5}x"
                f"{_f(r['p99_ms_c64'], '{:.1f}'):>9} ms {_f(r['p99_x'], '{:.1f}'):>5}x"
                f"{_f(r['peak_rss_mib']):>6} MiB {_f(r['rss_x'], '{:.1f}'):>4}x")
            if side == "pg" and r.get("db_detail_c16"):
                db = r["db_detail_c16"]
                lines.append(f"  {'  + database servers':<31}{_f(r['db_us_c16']):>8} µs"
                             f"   (PostgreSQL backends {db['pg_backends']:.0f}, PostgreSQL aux {db['pg_aux']:.0f},"
                             f" Redis {db['redis']:.0f})")
    lines += ["", "Every point: CPU per request µs (process tree, idle rate subtracted) / requests per second"]
    for name, pt in res["points"].items():
        cells = "  ".join(f"{s} {_f(pt['sides'][s].get('cpu_us'))}/{_f(pt['sides'][s].get('rps'))}"
                          for s in ("direct", *ROWS))
        errs = {s: v["errors"] for s, v in pt["sides"].items() if v["errors"]}
        lines.append(f"  {name:<28} {cells}" + (f"   ERRORS {errs}" if errs else ""))
    lines += ["", "Targets (issue 15; OpenAI non-stream unless named):"]
    for t in summ["targets"]:
        met = {True: "met", False: "NOT MET", None: "n/a"}[t["met"]]
        lines.append(f"  {t['target']:<46} {'≤' if 'RPS' not in t['target'] else '≥'} {t['limit']:<5}"
                     f" measured {_f(t['measured'], '{}'):<8} {met}")
    lines.append("")
    for side, m in res["money"].items():
        lines.append(f"Money {side}: {m['settled_records']} settled of {m['requests_sent']} sent "
                     f"({'match' if m['records_match'] else 'MISMATCH'}); db verify exit {m['db_verify_exit']};"
                     f" statuses {m['records_by_status']}")
    lines.append(f"exit codes: {res['exit_codes']}")
    for x in late(res):
        lines.append(f"LATE SETTLEMENT: {x}")
    return "\n".join(lines)


def late(res: dict) -> list[str]:
    """Rounds whose records were not all settled 45 s after the round (settled later: the
    money check at the end decides whether any were lost)."""
    return [f"{x['side']} {x['point']}: {x['settled']} of {x['expected']} records settled 45 s after the round"
            for x in res.get("settle_shortfalls", [])]


def failures(res: dict) -> list[str]:
    out = []
    for side, m in res["money"].items():
        if not m["records_match"]:
            out.append(f"{side}: {m['settled_records']} settled records for {m['requests_sent']} requests sent")
        if m["db_verify_exit"] != 0:
            out.append(f"{side}: a2agent db verify exited {m['db_verify_exit']}: {m['db_verify_output']}")
    for name, pt in res["points"].items():
        for side, v in pt["sides"].items():
            if v["errors"]:
                out.append(f"{name} {side}: failed requests {v['errors']}")
    return out


def markdown(report: dict) -> str:
    """The issue-15 table, one per lane and mode, for docs/performance.md."""
    meta, summ = report["meta"], report["summary"]
    out = [f"Run: {meta['when']}, {meta['mode']}, git {str(meta['git_head'])[:10]}, load average "
           f"{' / '.join(meta['loadavg_before'])} before, {' / '.join(meta['loadavg_after'])} after.", ""]
    for name, tab in summ["tables"].items():
        out += [f"**{name}**", "",
                "| | CPU per request (c=16) | added p50 (c=1) | added p99 (c=1) | RPS at c=64 (p99) | peak RSS |",
                "|---|---:|---:|---:|---:|---:|"]
        for side in ROWS:
            r = tab[side]
            cpu = f"{_f(r['cpu_us_c16'])} µs ({_f(r['cpu_x'], '{:.1f}')}×)"
            if side == "pg" and r.get("db_us_c16") is not None:
                cpu += f" + {_f(r['db_us_c16'])} µs database"
            out.append(
                f"| {LABEL[side]} | {cpu} | {_f(r['added_p50_ms_c1'], '{:.2f}')} ms ({_f(r['added_p50_x'], '{:.1f}')}×)"
                f" | {_f(r['added_p99_ms_c1'], '{:.2f}')} ms ({_f(r['added_p99_x'], '{:.1f}')}×)"
                f" | {_f(r['rps_c64'], '{:,.0f}')} ({_f(r['rps_x'], '{:.2f}')}×), p99 {_f(r['p99_ms_c64'], '{:.0f}')} ms"
                f" ({_f(r['p99_x'], '{:.1f}')}×) | {_f(r['peak_rss_mib'])} MiB ({_f(r['rss_x'], '{:.1f}')}×) |")
        out.append("")
    out += ["**Requests per second per core of CPU** (1,000,000 µs ÷ CPU per request at c=16)", "",
            "| configuration | OpenAI non-stream | OpenAI stream | Anthropic→OpenAI translation |",
            "|---|---:|---:|---:|"]
    t = summ["tables"]

    def per_core(name: str, side: str, with_db: bool = False) -> str:
        r = t.get(name, {}).get(side, {})
        us = r.get("cpu_us_c16")
        if not us:
            return "-"
        if with_db:
            us += r.get("db_us_c16") or 0
        return f"{1e6 / us:,.0f}"

    for side, label, db in (("floor", LABEL["floor"], False), ("sqlite", "SQLite", False),
                            ("pg", "PostgreSQL + Redis: gateway cores", False),
                            ("pg", "PostgreSQL + Redis: gateway + database cores", True),
                            ("w2", "SQLite, --workers 2", False)):
        out.append(f"| {label} | {per_core('openai_nonstream', side, db)} | {per_core('openai_stream', side, db)}"
                   f" | {per_core('translate_nonstream', side, db)} |")
    out += ["", "**Targets (issue 15)**", "", "| target | limit | measured | |", "|---|---:|---:|---|"]
    for t in summ["targets"]:
        met = {True: "met", False: "**not met**", None: "n/a"}[t["met"]]
        out.append(f"| {t['target']} | {'≥' if 'RPS' in t['target'] else '≤'} {t['limit']} | "
                   f"{_f(t['measured'], '{}')} | {met} |")
    return "\n".join(out) + "\n"
