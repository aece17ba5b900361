"""Money on POST /v1/responses, both translation lanes, on SQLite and PostgreSQL: every exit
path (answer, upstream error before and after the first byte, timeout, error event, client
disconnect mid-stream) settles once; cached tokens are charged at the cache rate; a failure
after the stream started ends it with ``response.failed`` and is charged exactly for the
output that reached the client (issue 13), nothing when none did; ``db verify`` stays clean."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from a2agent.billing.money import cost_micro
from a2agent.billing.verify import verify
from tests.billing.test_exit_paths import _prepare_cli_env, _records
from tests.conftest import Env, run_cli
from tests.support.gateway import GatewayProcess
from tests.dataplane.conftest import wait_for
from tests.support.relayed import counted_input_tokens, relayed_output_tokens, relayed_text
from tests.support.responses import render_stream
from tests.support.script import CHAT, MESSAGES, Script, ToolCall, Usage

USAGE = Usage(input_tokens=400, output_tokens=30, cache_read_tokens=600, cache_write_tokens=50)
MODELS = {"chat": "gpt-test", "messages": "claude-test"}


# request id -> (the body sent, the text the client received, whether the upstream had reported
# the input before it broke), for the streams read to the end
Sent = dict[str, tuple[dict[str, Any], str, bool]]


def _input_reported(body: dict[str, Any]) -> bool:
    """In these tests' scripts: Anthropic's message_start reports the input first thing; the
    Chat usage chunk comes last, after every fault."""
    return bool(body["model"] == MODELS["messages"])


def _post(env: Env, key: str, model: str, stream: bool, sent: Sent, *,
          disconnect: bool = False) -> tuple[int, list[str]]:
    """(status, the SSE event types received) for one request."""
    body = {"model": model, "input": "count to ten", "stream": stream}
    headers = {"authorization": f"Bearer {key}"}
    with httpx.Client(base_url=env.url, timeout=30) as client:
        if not stream:
            r = client.post("/v1/responses", json=body, headers=headers)
            return r.status_code, []
        with client.stream("POST", "/v1/responses", json=body, headers=headers) as r:
            events = []
            for line in r.iter_lines():
                if line.startswith("data: "):
                    events.append(orjson.loads(line[6:]))
                    if disconnect and len(events) >= 3:
                        break
            if not disconnect and r.status_code == 200:
                sent[r.headers["x-request-id"]] = (body, relayed_text(events), _input_reported(body))
            return r.status_code, [e["type"] for e in events]


def _assert_failure_charge(env: Env, r: Any, sent: Sent) -> None:
    """A failed request is charged for exactly the output its client received before the
    upstream failed (and the input the upstream read), nothing when none reached it."""
    body, text, reported = sent.get(r.id, ({}, "", False))
    if not text:
        assert r.cost_micro == 0 and r.input_tokens == r.output_tokens == 0, (r.status, r.error_type)
        return
    assert r.usage_source.startswith("relayed_"), r.usage_source
    assert r.output_tokens == relayed_output_tokens(env.gw.gateway, r.channel, text), (r.output_tokens, text)
    if reported:  # the input the upstream read, as it reported it
        assert (r.input_tokens, r.cache_read_tokens, r.cache_write_tokens) == (
            USAGE.input_tokens, USAGE.cache_read_tokens, USAGE.cache_write_tokens)
    else:  # none reported yet: the gateway's own estimate
        assert (r.input_tokens, r.cache_read_tokens, r.cache_write_tokens) == (counted_input_tokens(body), 0, 0)
    assert r.cost_micro > 0


def _books(env: Env, account_id: int, sent: Sent) -> list[Any]:
    def settled() -> bool:  # a disconnect is seen by the server a moment after the client left
        env.settle_all()
        return all(r.status != "pending" for r in env.records(account_id))

    wait_for(settled, 15, "every request to settle")
    records = env.records(account_id)
    prices = {m.model_id: m.prices for m in env.call(env.services.catalog.list_models())}
    for r in records:
        assert r.status != "pending" and r.settled_at is not None
        assert r.protocol == "responses"
        assert r.cost_micro == cost_micro(prices[r.model], r.input_tokens, r.output_tokens, r.cache_read_tokens,
                                          r.cache_write_tokens)
        if r.status not in ("ok", "client_disconnect"):
            _assert_failure_charge(env, r, sent)
    charges = [e for e in env.call(env.services.ledger.entries(account_id, limit=10_000)) if e.kind == "charge"]
    assert sorted(e.request_id for e in charges) == sorted(r.id for r in records if r.cost_micro)
    assert env.call(verify(env.services.db)) == []
    return records


CASES = [
    # (name, script fields, stream, disconnect, record status, the stream's last event)
    ("answer", {}, False, False, "ok", None),
    ("answer_stream", {}, True, False, "ok", "response.completed"),
    ("http_500", {"status": 500}, True, False, "upstream_error", None),
    ("reset_mid_stream", {"reset_mid_stream": 3}, True, False, "upstream_error", "response.failed"),
    ("error_event", {"error_event_mid_stream": 3}, True, False, "upstream_error", "response.failed"),
    ("stall_mid_stream", {"stall_mid_stream": 3, "stall_after": 3}, True, False, "timeout", "response.failed"),
    ("truncated", {"truncated_sse": 3}, True, False, "upstream_error", "response.failed"),
    ("disconnect", {"chunk_delay": 0.05}, True, True, "client_disconnect", None),
]


@pytest.mark.parametrize("lane", ["chat", "messages"])
def test_every_exit_path_settles_once(env_both: Env, lane: str) -> None:
    env = env_both
    env.call(env.services.catalog.update_channel("oai" if lane == "chat" else "ant", idle_timeout=1.0))
    acc = env.account(balance_usd=20)
    key = env.key(acc.id)
    start = env.balance(acc.id)
    sent: Sent = {}
    for name, fields, stream, disconnect, _status, last in CASES:
        env.upstream.enqueue(Script(text="one two three four five six", usage=USAGE, **fields))
        code, types = _post(env, key, MODELS[lane], stream, sent, disconnect=disconnect)
        assert code == (502 if name == "http_500" else 200), name
        if last is not None:
            assert types[-1] == last and types.count(last) == 1, (name, types[-3:])
            if last == "response.failed":
                assert "response.output_item.done" not in types[-2:]
    records = sorted(_books(env, acc.id, sent), key=lambda r: r.created_at)
    assert [r.status for r in records] == [c[4] for c in CASES]
    # the chat lane relayed text before its failures at event 3, charged for exactly that (see
    # _books); the Messages lane had only opened its text block, nothing charged
    charged = [c[0] for c, r in zip(CASES, records, strict=True)
               if r.status not in ("ok", "client_disconnect") and r.cost_micro]
    assert charged == (["reset_mid_stream", "error_event", "stall_mid_stream", "truncated"] if lane == "chat"
                       else []), charged
    ok = records[0]
    assert (ok.input_tokens, ok.output_tokens, ok.cache_read_tokens, ok.cache_write_tokens) == (400, 30, 600, 50)
    prices = env.call(env.services.catalog.list_models())
    p = next(m.prices for m in prices if m.model_id == MODELS[lane])
    assert ok.cost_micro == cost_micro(p, 400, 30, 600, 50)  # cache parts at their own rates
    disconnected = records[-1]
    assert disconnected.usage_source.endswith("_after_disconnect") and disconnected.cost_micro > 0
    assert env.balance(acc.id) == start - sum(r.cost_micro for r in records)


EXEC = {"type": "function", "name": "exec_command", "description": "Run a shell command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}


@pytest.mark.parametrize("lane", ["chat", "messages"])
def test_broken_stream_charges_the_text_it_relayed_not_the_held_back_call(env_both: Env, lane: str) -> None:
    """Text, then a whole tool call, then the upstream breaks just before its end, its usage
    already sent (the Chat usage chunk; Anthropic's message_delta). The client got the text; the
    call's item is only finished when the answer is complete, so it never got one it can use
    (its arguments may have streamed as deltas; response.failed does not list it, Codex never
    runs it). Charged: the text, counted from what was relayed, and the input the upstream
    reported — not the upstream's output count, which includes the call."""
    env = env_both
    acc = env.account(balance_usd=20)
    key = env.key(acc.id)
    start = env.balance(acc.id)
    text = "Let me look at the files first."
    script = Script(text=text, tool_calls=[ToolCall("exec_command", {"cmd": "ls -la /srv/project"})], usage=USAGE)
    frames = render_stream(CHAT if lane == "chat" else MESSAGES, script, {"stream_options": {"include_usage": True}},
                           "m", "0", "")
    env.upstream.enqueue(dataclasses.replace(script, reset_mid_stream=len(frames) - 1))  # all but the last
    body = {"model": MODELS[lane], "input": "what is in the project?", "stream": True, "tools": [EXEC]}
    with httpx.Client(base_url=env.url, timeout=30) as client:
        with client.stream("POST", "/v1/responses", json=body, headers={"authorization": f"Bearer {key}"}) as r:
            events = [orjson.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
            rid = r.headers["x-request-id"]
    assert r.status_code == 200 and events[-1]["type"] == "response.failed"
    assert [i["type"] for i in events[-1]["response"]["output"]] == ["message"]  # the call is not in it
    assert relayed_text(events) == text
    [rec] = _books(env, acc.id, {rid: (body, text, True)})
    assert rec.status == "upstream_error" and rec.usage_source == "relayed_partial_estimate"
    assert rec.output_tokens == relayed_output_tokens(env.gw.gateway, rec.channel, text) < USAGE.output_tokens
    prices = next(m.prices for m in env.call(env.services.catalog.list_models()) if m.model_id == MODELS[lane])
    assert rec.cost_micro == cost_micro(prices, USAGE.input_tokens, rec.output_tokens, USAGE.cache_read_tokens,
                                        USAGE.cache_write_tokens)
    assert env.balance(acc.id) == start - rec.cost_micro


def test_concurrent_responses_with_faults(env_both: Env) -> None:
    env = env_both
    rng = random.Random(14)
    acc = env.account(balance_usd=50)
    env.call(env.services.accounts.set_limits(acc.id, concurrency=0))
    env.gw.gateway.health.failure_threshold = 10**6
    key = env.key(acc.id)
    faults = [None, None, {"status": 500}, {"reset_mid_stream": 2}, {"error_event_mid_stream": 2},
              {"truncated_sse": 2}]
    n = 80
    for _ in range(n):
        env.upstream.enqueue(Script(text="a b c d e f", usage=USAGE, chunk_delay=0.005, **(rng.choice(faults) or {})))
    sent: Sent = {}
    left: dict[str, dict[str, Any]] = {}  # request id -> body, for the streams the client left

    async def one(client: httpx.AsyncClient, i: int) -> None:
        body = {"model": rng.choice(list(MODELS.values())), "input": f"q{i}", "stream": rng.random() < 0.7}
        headers = {"authorization": f"Bearer {key}"}
        if not body["stream"]:
            await client.post("/v1/responses", json=body, headers=headers)
            return
        async with client.stream("POST", "/v1/responses", json=body, headers=headers) as r:
            if rng.random() < 0.2:
                async for _ in r.aiter_raw():
                    break
                if r.status_code == 200:
                    left[r.headers["x-request-id"]] = body
                return
            raw = await r.aread()
            if r.status_code == 200:
                events = [orjson.loads(line[6:]) for line in raw.decode().splitlines() if line.startswith("data: ")]
                sent[r.headers["x-request-id"]] = (body, relayed_text(events), _input_reported(body))

    async def main() -> None:
        async with httpx.AsyncClient(base_url=env.url, timeout=30) as client:
            await asyncio.gather(*(one(client, i) for i in range(n)))

    asyncio.run(main())
    # a stream the client left may still have failed upstream before the gateway saw it go:
    # what the gateway relayed by then is all it could be, the first word (the faults come
    # after two events) on the chat lane, nothing on the Messages lane
    for rid, body in left.items():
        sent[rid] = (body, "a" if body["model"] == MODELS["chat"] else "", _input_reported(body))
    records = _books(env, acc.id, sent)
    assert len(records) == n
    assert any(r.usage_source.startswith("relayed_") for r in records)  # the charged failures were exercised
    assert env.balance(acc.id) == 50_000_000 - sum(r.cost_micro for r in records)


def _responses_streams(url: str, key: str, n: int, started: list[int], ends: list[str]) -> None:
    async def main() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            async def one(i: int) -> None:
                body = {"model": "m", "stream": True, "input": f"s{i}"}
                last = "none"
                try:
                    async with client.stream("POST", "/v1/responses", json=body,
                                             headers={"authorization": f"Bearer {key}"}) as r:
                        async for line in r.aiter_lines():
                            started.append(i)
                            if line.startswith("data: "):
                                last = orjson.loads(line[6:])["type"]
                except httpx.HTTPError:
                    last = "broken"
                ends.append(last)

            await asyncio.gather(*(one(i) for i in range(n)))

    asyncio.run(main())


@pytest.mark.parametrize("signal_name", ["sigterm", "sigkill"])
def test_responses_streams_across_shutdown(tmp_path: Path, upstream: Any, signal_name: str) -> None:
    """SIGTERM: in-flight Responses streams finish (response.completed) and settle as ok.
    SIGKILL: their pending records are settled at the next start (recovered)."""
    env, key = _prepare_cli_env(tmp_path, upstream)
    words = 60 if signal_name == "sigterm" else 400
    upstream.set_default(Script(text=" ".join(["word"] * words), chunk_delay=0.03))
    gw = GatewayProcess(tmp_path / "data").start()
    started: list[int] = []
    ends: list[str] = []
    t = threading.Thread(target=_responses_streams, args=(gw.url, key, 4, started, ends), daemon=True)
    t.start()
    wait_for(lambda: len(set(started)) == 4, 30, "the streams to start")
    if signal_name == "sigterm":
        assert gw.terminate(60) == 0
        t.join(30)
        assert ends == ["response.completed"] * 4
        rows = _records(tmp_path / "data")
        assert all(r["status"] == "ok" and r["protocol"] == "responses" and r["usage_source"] == "upstream"
                   for r in rows) and len(rows) == 4
    else:
        gw.kill()
        t.join(30)
        assert len([r for r in _records(tmp_path / "data") if r["settled_at"] is None]) == 4
        with GatewayProcess(tmp_path / "data", port=gw.port):
            rows = _records(tmp_path / "data")
        assert all(r["status"] == "recovered" and r["cost_micro"] > 0 for r in rows) and len(rows) == 4
    assert run_cli("db", "verify", env=env).returncode == 0
