"""A client that goes away mid-stream (SPEC §6: "client disconnect mid-stream — charge what the
upstream produced; keep reading the upstream's final usage when it comes within a bound, else
count the tokens relayed").

The gateway must not crash, stays ready, settles the request once with status
``client_disconnect`` and a charge > 0, and lets go of the upstream connection.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.dataplane.conftest import MSGS, Tenant, expected_cost, wait_for
from tests.support import Script, Usage

WORDS = " ".join(f"w{i}" for i in range(40))


def _open_and_abandon(env: Any, t: Tenant, protocol: str) -> bytes:
    """Start a stream with raw httpx, read the first chunk, then hang up."""
    if protocol == "openai":
        path, body = "/v1/chat/completions", {"model": "gpt-test", "messages": MSGS, "stream": True}
    else:
        path, body = "/v1/messages", {"model": "claude-test", "max_tokens": 500, "messages": MSGS, "stream": True}
    with httpx.Client(timeout=20) as c:
        with c.stream("POST", env.url + path, json=body, headers={"authorization": f"Bearer {t.key}"}) as r:
            assert r.status_code == 200
            first = next(r.iter_raw())
            assert first
        # leaving the block closes the connection with most of the body unread
    return first


def _settled(env: Any, t: Tenant, n: int = 1) -> list[Any]:
    """Wait until the tenant's n records are settled. (The gateway notices the hang-up a moment
    after the client closed, so waiting for background tasks alone could return too early.)"""
    def done() -> bool:
        recs = env.records(t.id)
        return len(recs) == n and all(r.settled_at is not None for r in recs)

    wait_for(done, 15, "the abandoned request to be settled")
    env.settle_all()
    return env.records(t.id)


def _assert_healthy(env: Any, *, upstream_open_before: int | None = None) -> None:
    assert httpx.get(env.url + "/readyz", timeout=5).status_code == 200
    wait_for(lambda: env.gw.gateway.pool.open_connections() == 0, 10, "the pool to release its connection")
    if upstream_open_before is not None:
        # an unfinished upstream response cannot go back to the keep-alive pool: its connection
        # is closed (idle pooled connections of earlier tests may still be open)
        assert env.upstream.wait_until(lambda u: u.open_connections <= upstream_open_before, 10), (
            env.upstream.open_connections, upstream_open_before)


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_disconnect_then_upstream_finishes_within_the_drain_bound(denv_both, protocol):
    """The upstream completes within disconnect_drain_seconds: its own usage is billed."""
    env = denv_both
    t = Tenant(env)
    start = t.balance()
    env.upstream.enqueue(Script(text=WORDS, chunk_delay=0.01, usage=Usage(input_tokens=50, output_tokens=40)))
    _open_and_abandon(env, t, protocol)
    (rec,) = _settled(env, t)
    assert rec.status == "client_disconnect", (rec.status, rec.error_type)
    assert rec.usage_source.startswith("upstream"), rec.usage_source
    assert (rec.input_tokens, rec.output_tokens) == (50, 40)
    assert rec.cost_micro == expected_cost(50, 40) > 0
    assert t.balance() == start - rec.cost_micro
    # the upstream was read to its end (not cut off), so its usage could be captured
    assert env.upstream.requests[0].outcome == "ok"
    _assert_healthy(env)
    t.close()


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
def test_disconnect_then_upstream_outlasts_the_drain_bound(denv_both, protocol):
    """The upstream is still talking when the drain bound is over: the gateway hangs up on it
    and bills what it can count (input estimate / upstream input + relayed output)."""
    env = denv_both
    t = Tenant(env)
    start = t.balance()
    env.upstream.enqueue(Script(text=" ".join(f"long{i}" for i in range(400)), chunk_delay=0.05,
                                usage=Usage(input_tokens=50, output_tokens=400)))
    open_before = env.upstream.open_connections
    _open_and_abandon(env, t, protocol)
    (rec,) = _settled(env, t)
    assert rec.status == "client_disconnect", (rec.status, rec.error_type)
    assert "estimate" in rec.usage_source or "counted" in rec.usage_source, rec.usage_source
    assert 0 < rec.output_tokens < 400  # only what was produced before the gateway gave up
    assert rec.input_tokens > 0
    if protocol == "anthropic":  # message_start carried the upstream's input count
        assert rec.input_tokens == 50
    assert rec.cost_micro == expected_cost(rec.input_tokens, rec.output_tokens) > 0
    assert t.balance() == start - rec.cost_micro
    assert env.upstream.wait_until(lambda u: u.client_disconnects == 1, 5)  # the gateway hung up
    _assert_healthy(env, upstream_open_before=open_before)
    t.close()


def test_gateway_serves_normally_after_disconnects(denv):
    t = Tenant(denv)
    for protocol in ("openai", "anthropic"):
        denv.upstream.enqueue(Script(text=WORDS, chunk_delay=0.01))
        _open_and_abandon(denv, t, protocol)
    _settled(denv, t, 2)
    assert t.oa.chat.completions.create(model="gpt-test", messages=MSGS).choices[0].message.content
    with t.an.messages.stream(model="claude-test", max_tokens=50, messages=MSGS) as s:
        assert s.get_final_message().content[0].text
    recs = t.records()
    assert sorted(r.status for r in recs) == ["client_disconnect", "client_disconnect", "ok", "ok"]
    assert all(r.settled_at is not None and r.cost_micro > 0 for r in recs)
    _assert_healthy(denv)
    t.close()


def test_disconnect_frees_the_concurrency_slot(denv):
    """The admission slot is released after the drained settlement, so a capped account can go on."""
    t = Tenant(denv)
    denv.call(denv.services.accounts.set_limits(t.id, concurrency=1))
    denv.upstream.enqueue(Script(text=WORDS, chunk_delay=0.01))
    _open_and_abandon(denv, t, "openai")
    _settled(denv, t)
    assert t.oa.chat.completions.create(model="gpt-test", messages=MSGS).choices
    t.close()


@pytest.mark.parametrize("stream", [False, True], ids=["nonstream", "stream"])
def test_client_gives_up_before_the_first_byte(denv, stream):
    """The client times out while the upstream is still thinking; the upstream then answers.
    The request is settled once (the answer was produced, so it is billed), and the account's
    concurrency slot and the upstream connection are given back."""
    t = Tenant(denv)
    denv.call(denv.services.accounts.set_limits(t.id, concurrency=1))
    denv.upstream.enqueue(Script(stall_before_headers=0.8, text="a b c d e f", chunk_delay=0.01,
                                 usage=Usage(input_tokens=7, output_tokens=6)))
    with pytest.raises(httpx.TimeoutException):
        httpx.post(denv.url + "/v1/chat/completions", json={"model": "gpt-test", "messages": MSGS, "stream": stream},
                   headers={"authorization": f"Bearer {t.key}"}, timeout=0.3)
    (rec,) = _settled(denv, t)
    assert rec.status == ("client_disconnect" if stream else "ok"), rec.status
    assert (rec.input_tokens, rec.output_tokens) == (7, 6) and rec.cost_micro == expected_cost(7, 6)
    assert t.oa.chat.completions.create(model="gpt-test", messages=MSGS).choices  # the slot is free again
    _assert_healthy(denv)
    t.close()
