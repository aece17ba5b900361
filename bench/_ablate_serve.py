"""`a2agent serve` with parts of the per-request database work replaced by stubs, for
bench/ablate.py only (never for real traffic: stubbed settlement charges nothing).

$A2AGENT_BENCH_ABLATE is a comma-separated subset of:
  auth    the key lookup runs once per key, then is served from a dict
  open    the pending request record is not written at admission
  settle  settlement does nothing (no record update, ledger entry, roll-up, key touch)
The gateway's code is not changed: methods are replaced on the classes at start-up.
"""

from __future__ import annotations

import os
import sys

WHAT = {w for w in os.environ.get("A2AGENT_BENCH_ABLATE", "").split(",") if w}
unknown = WHAT - {"auth", "open", "settle"}
if unknown:
    sys.exit(f"unknown ablation(s): {', '.join(sorted(unknown))}")

if "auth" in WHAT:
    from a2agent.auth.accounts import Accounts

    _authenticate = Accounts.authenticate
    _cache: dict = {}

    async def authenticate(self, presented):  # type: ignore[no-untyped-def]
        principal = _cache.get(presented)
        if principal is None:
            principal = _cache[presented] = await _authenticate(self, presented)
        return principal

    Accounts.authenticate = authenticate  # type: ignore[method-assign]

if "open" in WHAT or "settle" in WHAT:
    from a2agent.billing.ledger import Ledger

    if "open" in WHAT:
        async def open_request(self, pending, **_kw):  # type: ignore[no-untyped-def]
            return None

        Ledger.open_request = open_request  # type: ignore[method-assign]
    if "settle" in WHAT:
        async def settle(self, pending, outcome):  # type: ignore[no-untyped-def]
            return 0

        Ledger.settle = settle  # type: ignore[method-assign]

if __name__ == "__main__":
    from a2agent.cli import cli

    sys.argv[0] = "a2agent"
    cli(prog_name="a2agent")
