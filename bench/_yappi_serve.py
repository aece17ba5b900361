"""`a2agent serve` under yappi's CPU clock, for bench/hotspots.py (not used by bench/run.py).

SIGUSR1 clears and starts profiling (every thread: the event loop and aiosqlite's workers);
SIGUSR2 stops it and writes per-function CPU times as JSON to $A2AGENT_BENCH_PROFILE_OUT.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import yappi

OUT = os.environ["A2AGENT_BENCH_PROFILE_OUT"]


def _start(*_: object) -> None:
    yappi.stop()
    yappi.clear_stats()
    yappi.set_clock_type("cpu")
    yappi.start(builtins=True, profile_threads=True)


def _dump(*_: object) -> None:
    yappi.stop()
    funcs = []
    for f in yappi.get_func_stats():
        funcs.append({"name": f.name, "module": f.module, "line": f.lineno, "ncall": f.ncall,
                      "tsub": f.tsub, "ttot": f.ttot, "builtin": bool(f.builtin)})
    threads = [{"id": t.id, "tid": t.tid, "name": t.name, "ttot": t.ttot} for t in yappi.get_thread_stats()]
    tmp = OUT + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"funcs": funcs, "threads": threads}, fh)
    os.replace(tmp, OUT)


signal.signal(signal.SIGUSR1, _start)
signal.signal(signal.SIGUSR2, _dump)

if __name__ == "__main__":
    from a2agent.cli import cli

    sys.argv[0] = "a2agent"
    cli(prog_name="a2agent")
