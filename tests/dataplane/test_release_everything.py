"""Every admitted request releases everything — concurrency slot, channel slot, balance hold —
on every path, including exceptions raised by the gateway's own code (issue 13). A failure is
injected at each step of the request path; afterwards nothing may stay held and the channel's
breaker must not have counted our own failure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from a2agent.billing.verify import verify
from a2agent.providers.adapters import OpenAIPassthrough
from a2agent.store.models import utcnow
from tests.dataplane.conftest import MSGS, Tenant
from tests.dataplane.test_tenant_safety import breakers, held
from tests.support import Script


class Injected(RuntimeError):
    pass


def boom(*args: Any, **kwargs: Any) -> Any:
    raise Injected("injected failure")


async def aboom(*args: Any, **kwargs: Any) -> Any:
    raise Injected("injected failure")


# step → (patch it, the upstream script, whether the channel saw a real upstream failure)
def _patches(env: Any, mp: pytest.MonkeyPatch) -> dict[str, Callable[[], None]]:
    gw = env.gw.gateway
    return {
        "route_selection": lambda: mp.setattr(gw.selector, "order", boom),
        "rate_limits": lambda: mp.setattr(gw.admission, "_rate_limits", aboom),
        "pending_record": lambda: mp.setattr(gw.services.ledger, "open_request", aboom),
        "channel_slot": lambda: mp.setattr(gw.health, "acquire", aboom),
        "upstream_call": lambda: mp.setattr(gw.pool, "post", aboom),
        "response_adapter": lambda: mp.setattr(OpenAIPassthrough, "response", boom),
        "stream_adapter": lambda: mp.setattr(OpenAIPassthrough, "on_event", boom),
        "usage_counting": lambda: mp.setattr(gw.relay.token_counter, "count", boom),
        "settlement": lambda: mp.setattr(gw.services.ledger, "settle", aboom),
        "tpm_recording": lambda: mp.setattr(gw.admission, "record_tokens", aboom),
    }


STEPS = ["route_selection", "rate_limits", "pending_record", "channel_slot", "upstream_call",
         "response_adapter", "stream_adapter", "usage_counting", "settlement", "tpm_recording"]


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
@pytest.mark.parametrize("step", STEPS)
def test_a_failure_at_each_step_leaves_nothing_held(denv, step, stream, monkeypatch):
    t = Tenant(denv)
    try:
        denv.upstream.set_default(Script(omit_usage=step == "usage_counting"))
        _patches(denv, monkeypatch)[step]()
        r = httpx.post(denv.url + "/v1/chat/completions", headers={"authorization": f"Bearer {t.key}"},
                       json={"model": "gpt-test", "messages": MSGS, "stream": stream}, timeout=30)
        r.read()
        assert r.status_code in (200, 500, 502), (r.status_code, r.text)
        if r.status_code == 500:  # our own failure: said in the caller's protocol, not charged
            assert r.json()["error"]["type"] == "api_error"
        denv.settle_all()
        monkeypatch.undo()
        state = held(denv, t)
        if step == "settlement":
            # the settlement could not be written: the pending record keeps its hold until
            # recovery settles it (as after a crash), and recovery releases it
            assert state["concurrency"] == state["oai"] == 0
            n = denv.call(denv.services.ledger.recover_pending(None, older_than=utcnow() + dt.timedelta(seconds=1)))
            assert n == 1
            state = held(denv, t)
        assert state == {"concurrency": 0, "oai": 0, "ant": 0, "reserved": 0}, state
        if step not in ("response_adapter", "stream_adapter"):  # those read as a malformed upstream
            assert breakers(denv)["oai"] == ("closed", 0)
        assert all(rec.status != "pending" for rec in t.records())
        assert denv.call(verify(denv.services.db)) == []
    finally:
        t.close()
