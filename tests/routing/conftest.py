"""Routing tests: several channels per model, failover, breakers, limits (issue 9).

One gateway per module (start-up costs ~1.5 s) wired to TWO scripted upstreams, ``A`` and
``B``, each serving both wire protocols. Channels:

    a-oai  openai     on A        b-oai  openai     on B
    a-ant  anthropic  on A        b-ant  anthropic  on B

Models (same prices as tests/conftest.py: $1 / $2 per 1M input / output tokens):

    solo-oai  -> a-oai                  solo-ant  -> a-ant
    duo-oai   -> a-oai (prio 10), b-ant (prio 0)
    duo-ant   -> a-ant (prio 10), b-oai (prio 0)

so the primary channel is always on A (where faults are scripted) and the backup is on B, in
the *other* protocol: a failover also crosses from passthrough to translation or back.
Every test gets a fresh tenant, emptied upstream recordings, closed breakers and the
module's channel tuning (first byte 1 s, idle 1 s); afterwards the fixture checks that the
gateway is quiescent: no background task, no upstream connection held, no channel slot
held, /readyz 200.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx
import openai
import orjson
import pytest

from a2agent.billing.money import Prices
from tests.conftest import Env, _env
from tests.support import Script, ScriptedUpstream, Usage

MSGS = [{"role": "user", "content": "Say hello"}]
TEXT_A = "Alpha answers here"
TEXT_B = "Bravo answers instead"
# what each upstream reports, so the charge shows which one answered
USAGE_A = Usage(input_tokens=11, output_tokens=7)  # 11*1 + 7*2 = 25 micro-USD
USAGE_B = Usage(input_tokens=100, output_tokens=40)  # 100*1 + 40*2 = 180 micro-USD
COST_A, COST_B = 25, 180

CHANNELS = {
    "a-oai": ("openai", "A"), "a-ant": ("anthropic", "A"),
    "b-oai": ("openai", "B"), "b-ant": ("anthropic", "B"),
}
ROUTES = {  # model -> [(channel, priority, weight)]
    "solo-oai": [("a-oai", 0, 1)],
    "solo-ant": [("a-ant", 0, 1)],
    "duo-oai": [("a-oai", 10, 1), ("b-ant", 0, 1)],
    "duo-ant": [("a-ant", 10, 1), ("b-oai", 0, 1)],
    "spread": [("a-oai", 5, 3), ("b-oai", 5, 1), ("b-ant", 0, 1)],  # 3:1 by weight, then a fallback
}
TUNING = dict(connect_timeout=None, first_byte_timeout=1.0, idle_timeout=1.0, total_timeout=None,
              max_concurrency=None, max_queue=None, max_response_bytes=None, enabled=True)
PRICES = Prices(1_000_000, 2_000_000, 100_000, 1_250_000)


def wait_for(pred: Any, timeout: float = 10.0, what: str = "condition") -> None:
    """Poll with a deadline (no sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


# ---- wire parsing -----------------------------------------------------------------------------
@dataclass
class Reply:
    status: int
    headers: httpx.Headers
    text: str
    elapsed: float
    events: list[tuple[str | None, Any]] = field(default_factory=list)  # (event name, parsed data)

    def json(self) -> Any:
        return orjson.loads(self.text)


def parse_sse(text: str) -> list[tuple[str | None, Any]]:
    """(event, data) per SSE event; data parsed as JSON when it is JSON, else kept as str
    (so a malformed event relayed as-is stays visible). Comments are skipped."""
    out: list[tuple[str | None, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith(":") or not line:
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
        if name is None and not data:
            continue
        raw = "\n".join(data)
        try:
            parsed: Any = orjson.loads(raw) if raw and raw != "[DONE]" else raw
        except orjson.JSONDecodeError:
            parsed = raw
        out.append((name, parsed))
    return out


def body_for(caller: str, model: str, stream: bool) -> tuple[str, dict[str, Any]]:
    if caller == "openai":
        return "/v1/chat/completions", {"model": model, "messages": MSGS, "stream": stream}
    return "/v1/messages", {"model": model, "max_tokens": 50, "messages": MSGS, "stream": stream}


def stream_text(caller: str, events: list[tuple[str | None, Any]]) -> str:
    parts = []
    for name, data in events:
        if not isinstance(data, dict):
            continue
        if caller == "openai":
            for ch in data.get("choices") or ():
                parts.append((ch.get("delta") or {}).get("content") or "")
        elif name == "content_block_delta" and data.get("delta", {}).get("type") == "text_delta":
            parts.append(data["delta"]["text"])
    return "".join(parts)


def answer_text(caller: str, body: dict[str, Any]) -> str:
    if caller == "openai":
        return body["choices"][0]["message"]["content"]
    return "".join(b.get("text", "") for b in body["content"] if b.get("type") == "text")


def is_error_event(caller: str, name: str | None, data: Any) -> bool:
    if caller == "openai":
        return name is None and isinstance(data, dict) and "error" in data and not data.get("choices")
    return name == "error"


def assert_answer(r: Reply, caller: str, stream: bool, text: str) -> None:
    assert r.status == 200, (r.status, r.text[:500])
    if not stream:
        assert answer_text(caller, r.json()) == text, r.text[:500]
        return
    assert not any(is_error_event(caller, n, d) for n, d in r.events), r.text[-500:]
    assert stream_text(caller, r.events) == text, r.text[:1000]
    if caller == "openai":
        assert r.events[-1] == (None, "[DONE]"), r.events[-3:]
    else:
        assert r.events[0][0] == "message_start" and r.events[-1][0] == "message_stop", r.events


def assert_error_body(r: Reply, caller: str, status: int) -> dict[str, Any]:
    """A JSON error in the caller's protocol (before any byte of an answer was sent)."""
    assert r.status == status, (r.status, r.text[:500])
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    if caller == "openai":
        assert set(body) == {"error"}, body
        err = body["error"]
        assert set(err) >= {"message", "type", "param", "code"}, err
    else:
        assert body["type"] == "error", body
        err = body["error"]
        assert set(err) >= {"type", "message"}, err
    assert isinstance(err["message"], str) and err["message"], err
    return err


def assert_stream_error(r: Reply, caller: str) -> dict[str, Any]:
    """The stream started (some event before the error), then exactly one terminal error
    event in the caller's protocol, and nothing after it: never a silent truncation."""
    assert r.status == 200, (r.status, r.text[:500])
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.endswith("\n\n"), r.text[-200:]
    errors = [i for i, (n, d) in enumerate(r.events) if is_error_event(caller, n, d)]
    assert errors == [len(r.events) - 1], r.text[-800:]
    assert len(r.events) >= 2, "the stream should have started before the fault"
    data = r.events[-1][1]
    assert isinstance(data, dict), data
    if caller == "openai":
        err = data["error"]
        assert set(err) >= {"message", "type", "param", "code"}, err
        assert "[DONE]" not in r.text
    else:
        assert data["type"] == "error", data
        err = data["error"]
        assert err["type"] in ("api_error", "timeout_error", "overloaded_error"), err
        assert "event: message_stop" not in r.text
    assert isinstance(err["message"], str) and err["message"], err
    return err


# ---- the rig ----------------------------------------------------------------------------------
class Tenant:
    """One account with one key (no console password: hashing costs ~0.3 s)."""

    def __init__(self, rig: "Rig", balance_usd: int = 10) -> None:
        env = rig.env
        self.rig = rig
        self.account = env.call(env.services.accounts.create(f"rt-{secrets.token_hex(6)}@example.com", None))
        env.call(env.services.ledger.adjust(self.account.id, balance_usd * 1_000_000, note="test"))
        self.id: int = self.account.id
        self.key = env.key(self.id)
        self.start_balance = self.balance()
        self._oa: openai.OpenAI | None = None
        self._an: anthropic.Anthropic | None = None

    @property
    def oa(self) -> openai.OpenAI:
        if self._oa is None:
            self._oa = openai.OpenAI(base_url=self.rig.url + "/v1", api_key=self.key, max_retries=0, timeout=15)
        return self._oa

    @property
    def an(self) -> anthropic.Anthropic:
        if self._an is None:
            self._an = anthropic.Anthropic(base_url=self.rig.url, api_key=self.key, max_retries=0, timeout=15)
        return self._an

    def balance(self) -> int:
        return self.rig.env.balance(self.id)

    def records(self) -> list[Any]:
        self.rig.env.settle_all()
        return self.rig.env.records(self.id)

    def only_record(self) -> Any:
        """The single request record, settled exactly once (one roll-up, at most one charge)."""
        env = self.rig.env
        recs = self.records()
        assert len(recs) == 1, [(r.id, r.status) for r in recs]
        rec = recs[0]
        assert rec.status != "pending" and rec.settled_at is not None, (rec.status, rec.settled_at)
        total = env.call(env.gw.gateway.usage.key_summary(rec.key_id))["total"]
        assert (total["requests"], total["cost_micro"]) == (1, rec.cost_micro), total
        charges = [e for e in env.call(env.services.ledger.entries(self.id, limit=100)) if e.kind == "charge"]
        assert [(e.request_id, -e.amount_micro) for e in charges] == (
            [(rec.id, rec.cost_micro)] if rec.cost_micro else [])
        assert self.balance() == self.start_balance - rec.cost_micro
        return rec

    def close(self) -> None:
        for c in (self._oa, self._an):
            if c is not None:
                c.close()


def attempts(rec: Any) -> list[tuple[str, str]]:
    return [(a["channel"], a["outcome"]) for a in orjson.loads(rec.attempts or "[]")]


class Rig:
    def __init__(self, env: Env, up_a: ScriptedUpstream, up_b: ScriptedUpstream) -> None:
        self.env = env
        self.up = {"A": up_a, "B": up_b}
        self.a, self.b = up_a, up_b
        self.gw = env.gw.gateway
        self._dirty: set[str] = set(CHANNELS)
        self._http = httpx.Client(timeout=20)
        self._settings = self.gw.relay.settings
        self.pool = ThreadPoolExecutor(4, thread_name_prefix="routing-client")

    def relay_settings(self, **values: Any) -> None:
        """Change the relay's settings (max_attempts, upstream_total_timeout) for one test."""
        self.gw.relay.settings = dataclasses.replace(self._settings, **values)

    def background(self, fn: Any, *args: Any, **kw: Any) -> Future[Any]:
        return self.pool.submit(fn, *args, **kw)

    @property
    def url(self) -> str:
        return self.env.url

    def setup_catalog(self) -> None:
        cat = self.env.services.catalog
        for name, (protocol, _where) in CHANNELS.items():
            self.env.call(cat.add_channel(name, protocol=protocol, base_url=self.base_url(name),
                                          api_key=f"k-{name}"))
        for model, routes in ROUTES.items():
            for ch, prio, weight in routes:
                self.env.call(cat.add_model(model, channel=ch, prices=PRICES, upstream_model=f"up-{model}",
                                            priority=prio, weight=weight))

    def base_url(self, name: str) -> str:
        protocol, where = CHANNELS[name]
        return self.up[where].openai_base if protocol == "openai" else self.up[where].anthropic_base

    # ---- channel state ----
    def channel(self, name: str) -> Any:
        cat = self.env.services.catalog
        return self.env.call(cat.snapshot(self.env.call(cat.current_version()))).channels[name]

    def state(self, name: str) -> Any:
        return self.gw.health.state(self.channel(name))

    def describe(self, name: str) -> str:
        return self.gw.health.describe(self.channel(name))

    def tune(self, name: str, **values: Any) -> None:
        self._dirty.add(name)
        self.env.call(self.env.services.catalog.update_channel(name, **values))

    def reset(self) -> None:
        for up, text, usage in ((self.a, TEXT_A, USAGE_A), (self.b, TEXT_B, USAGE_B)):
            up.clear()
            up.set_default(Script(text=text, usage=usage))
        for name in sorted(self._dirty):
            self.env.call(self.env.services.catalog.update_channel(name, base_url=self.base_url(name),
                                                                   api_key=f"k-{name}", **TUNING))
        self._dirty.clear()
        self.gw.relay.settings = self._settings
        health = self.gw.health
        health.failure_threshold, health.cooldown = 5, 30.0
        for name in CHANNELS:
            st = self.state(name)
            st.state, st.consecutive_failures, st.blocked_until, st.probe_in_flight = "closed", 0, 0.0, False
            st.outcomes.clear()

    def check_quiescent(self) -> None:
        env = self.env
        env.settle_all()
        assert len(self.gw.tasks) == 0
        wait_for(lambda: self.gw.pool.open_connections() == 0, 10, "the pool to release upstream connections")
        for name in CHANNELS:
            st = self.state(name)
            assert st.in_flight == 0 and not st.waiters, (name, st.in_flight, len(st.waiters))
            assert not st.probe_in_flight, name
        assert self._http.get(self.url + "/readyz").status_code == 200

    # ---- requests ----
    def send(self, t: Tenant, caller: str, model: str, stream: bool, timeout: float = 15) -> Reply:
        path, body = body_for(caller, model, stream)
        t0 = time.monotonic()
        r = self._http.post(self.url + path, json=body, headers={"authorization": f"Bearer {t.key}"},
                            timeout=timeout)
        reply = Reply(r.status_code, r.headers, r.text, time.monotonic() - t0)
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            reply.events = parse_sse(r.text)
        return reply

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self._http.close()


@pytest.fixture(scope="module")
def shared_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tmp: Path = tmp_path_factory.mktemp("routing")
    with ScriptedUpstream(default_text=TEXT_A) as up_a, ScriptedUpstream(default_text=TEXT_B) as up_b:
        for env in _env(tmp, up_a, None, disconnect_drain_seconds=1.5):
            rig = Rig(env, up_a, up_b)
            rig.setup_catalog()
            try:
                yield rig
            finally:
                rig.close()


@pytest.fixture
def rig(shared_rig: Rig) -> Iterator[Rig]:
    shared_rig.reset()
    yield shared_rig
    shared_rig.check_quiescent()


@pytest.fixture
def tenant(rig: Rig) -> Iterator[Tenant]:
    t = Tenant(rig)
    try:
        yield t
    finally:
        t.close()
