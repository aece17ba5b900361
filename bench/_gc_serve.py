"""`a2agent serve` with the cyclic garbage collector timed, for bench/hotspots.py --tool gc.

SIGUSR1 clears the counters; SIGUSR2 writes, per generation, the number of collections, the
objects collected and the CPU time spent in them (thread CPU clock of the collecting thread)
as JSON to $A2AGENT_BENCH_PROFILE_OUT. The gateway's code is not changed.

With A2AGENT_BENCH_GC_FREEZE=1, SIGUSR1 also runs `gc.collect(); gc.freeze()` (start-up and
warm-up objects move to the permanent generation), to measure that lever.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time

OUT = os.environ["A2AGENT_BENCH_PROFILE_OUT"]
_stats: dict[int, dict[str, float]] = {}
_started: list[float] = []


def _callback(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _started.append(time.thread_time())
        return
    if not _started:
        return
    spent = time.thread_time() - _started.pop()
    s = _stats.setdefault(info["generation"], {"collections": 0, "collected": 0, "cpu_s": 0.0})
    s["collections"] += 1
    s["collected"] += info.get("collected", 0)
    s["cpu_s"] += spent


def _clear(*_: object) -> None:
    if os.environ.get("A2AGENT_BENCH_GC_FREEZE") == "1":
        gc.collect()
        gc.freeze()
    _stats.clear()


def _dump(*_: object) -> None:
    tmp = OUT + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"thresholds": gc.get_threshold(), "generations": {str(k): v for k, v in _stats.items()}}, fh)
    os.replace(tmp, OUT)


gc.callbacks.append(_callback)
signal.signal(signal.SIGUSR1, _clear)
signal.signal(signal.SIGUSR2, _dump)

if __name__ == "__main__":
    from a2agent.cli import cli

    sys.argv[0] = "a2agent"
    cli(prog_name="a2agent")
