"""`a2agent serve` with the wall time of each per-request phase recorded, for
bench/hotspots.py --tool phases (never for real traffic). The gateway's code is not changed:
the phases' methods are wrapped on their classes at start-up.

Phases: key lookup (Accounts.authenticate), catalogue snapshot (Catalog.snapshot), admission
(Admission.admit: concurrency slot, rate limits), pending record (Ledger.open_request),
upstream response headers (UpstreamPool.post), upstream body (UpstreamResponse.read),
settlement (Ledger.settle, after the response). SIGUSR1 clears; SIGUSR2 writes count, mean,
p50 and p99 per phase in ms as JSON to $A2AGENT_BENCH_PROFILE_OUT.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

OUT = os.environ["A2AGENT_BENCH_PROFILE_OUT"]
_samples: dict[str, list[float]] = {}


def _wrap(cls: type, name: str, label: str) -> None:
    original: Callable[..., Awaitable[Any]] = getattr(cls, name)

    @functools.wraps(original)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return await original(*args, **kwargs)
        finally:
            _samples.setdefault(label, []).append(time.perf_counter() - t0)

    setattr(cls, name, timed)


def _install() -> None:
    from a2agent.auth.accounts import Accounts
    from a2agent.billing.admission import Admission
    from a2agent.billing.ledger import Ledger
    from a2agent.providers.upstream import UpstreamPool, UpstreamResponse
    from a2agent.routing.catalog import Catalog

    _wrap(Accounts, "authenticate", "1 key lookup")
    _wrap(Catalog, "snapshot", "2 catalogue snapshot")
    _wrap(Admission, "admit", "3 admission (slot, limits)")
    _wrap(Ledger, "open_request", "4 pending record")
    _wrap(UpstreamPool, "post", "5 upstream, to response headers")
    _wrap(UpstreamResponse, "read", "6 upstream body")
    _wrap(Ledger, "settle", "7 settlement (after the response)")


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))]


def _clear(*_: object) -> None:
    _samples.clear()


def _dump(*_: object) -> None:
    out = {k: {"n": len(v), "mean_ms": round(sum(v) / len(v) * 1000, 3), "p50_ms": round(_pct(v, 50) * 1000, 3),
               "p99_ms": round(_pct(v, 99) * 1000, 3)} for k, v in sorted(_samples.items()) if v}
    tmp = OUT + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(out, fh)
    os.replace(tmp, OUT)


signal.signal(signal.SIGUSR1, _clear)
signal.signal(signal.SIGUSR2, _dump)

if __name__ == "__main__":
    _install()
    from a2agent.cli import cli

    sys.argv[0] = "a2agent"
    cli(prog_name="a2agent")
