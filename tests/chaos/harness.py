"""Load, readiness watching and the money check shared by the chaos tests.

Every test drives concurrent clients (OpenAI and Anthropic protocol, alternately) at a real
gateway while one of its dependencies fails, then checks the same things: only 200 or a
clear 503 / 429 came back (in the caller's protocol, with Retry-After), nothing hung, the
gateway recovered within a stated time, and the money is exact — Σ charges equals Σ tokens ×
price of the answered requests, ``db verify`` is clean, no pending record is left.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from a2agent.billing.money import Prices, cost_micro

# outage length in the normal run; A2AGENT_CHAOS_OUTAGE=10 reproduces the 10 s
OUTAGE_SECONDS = float(os.environ.get("A2AGENT_CHAOS_OUTAGE", "3"))
RESULTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "chaos.jsonl"


@dataclass
class Shot:
    t0: float
    t1: float
    protocol: str
    status: int
    request_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    err_type: str | None = None
    err_code: str | None = None
    message: str = ""
    retry_after: str | None = None

    @property
    def latency(self) -> float:
        return self.t1 - self.t0


def _shoot(client: httpx.Client, key: str, model: str, i: int) -> Shot:
    anthropic = i % 2 == 1
    t0 = time.monotonic()
    if anthropic:
        r = client.post("/v1/messages", headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
                        json={"model": model, "max_tokens": 16,
                              "messages": [{"role": "user", "content": f"hello {i}"}]})
    else:
        r = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {key}"},
                        json={"model": model, "messages": [{"role": "user", "content": f"hello {i}"}]})
    shot = Shot(t0, time.monotonic(), "anthropic" if anthropic else "openai", r.status_code,
                r.headers.get("x-request-id"), retry_after=r.headers.get("retry-after"))
    body = r.json()
    if r.status_code == 200:
        u = body["usage"]
        shot.input_tokens = u["input_tokens"] if anthropic else u["prompt_tokens"]
        shot.output_tokens = u["output_tokens"] if anthropic else u["completion_tokens"]
    elif anthropic:
        assert body["type"] == "error", body
        shot.err_type, shot.message = body["error"]["type"], body["error"]["message"]
    else:
        shot.err_type, shot.err_code = body["error"]["type"], body["error"]["code"]
        shot.message = body["error"]["message"]
    return shot


class Load:
    """``threads`` clients sending back to back until stopped (bounded in time)."""

    def __init__(self, url: str, key: str, model: str, threads: int = 6, limit: float = 45) -> None:
        self.url, self.key, self.model, self.limit = url, key, model, limit
        self.shots: list[Shot] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True)
                         for n in range(threads)]

    def _run(self, n: int) -> None:
        deadline = time.monotonic() + self.limit
        with httpx.Client(base_url=self.url, timeout=30) as client:
            i = n
            while not self._stop.is_set() and time.monotonic() < deadline:
                try:
                    self.shots.append(_shoot(client, self.key, self.model, i))
                except Exception as exc:  # noqa: BLE001 - a hang, a reset, a body not in the protocol
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                i += len(self._threads)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(40)

    def wait_for(self, n: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while len(self.shots) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.shots) >= n, f"load did not get going: {self.failures[:3]}"

    def wait_ok_after(self, t: float, timeout: float = 20) -> float:
        """Seconds from ``t`` until a request started after ``t`` was answered 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = [s.t1 for s in list(self.shots) if s.t0 >= t and s.status == 200]
            if ok:
                return min(ok) - t
            time.sleep(0.02)
        raise AssertionError(f"no 200 within {timeout} s after the fault ended")


class ReadyWatch:
    """Polls /readyz every 50 ms; answers when it first changed to a state after a time."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.samples: list[tuple[float, int, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self._stop.is_set():
                t = time.monotonic()
                try:
                    r = client.get("/readyz")
                    self.samples.append((t, r.status_code, r.json()))
                except httpx.HTTPError:
                    self.samples.append((t, 0, {}))
                time.sleep(0.05)

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def first(self, after: float, status: int, timeout: float = 10, **fields: str) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, st, body in list(self.samples):
                if t >= after and st == status and all(body.get(k) == v for k, v in fields.items()):
                    return t - after
            time.sleep(0.02)
        raise AssertionError(f"/readyz was not {status} {fields} within {timeout} s: "
                             f"{self.samples[-3:]}")


def assert_clear_answers(shots: list[Shot], allowed: tuple[int, ...] = (200, 503),
                         max_latency: float = 6.0) -> None:
    """Only 200 or a clear 503 (429) in the caller's protocol, with Retry-After; no hang."""
    assert shots
    for s in shots:
        assert s.status in allowed, (s.status, s.err_type, s.message)
        assert s.latency < max_latency, f"a request took {s.latency:.1f} s"
        if s.status == 503:
            assert s.retry_after is not None and int(s.retry_after) >= 1
            want = "overloaded_error" if s.protocol == "anthropic" else "service_unavailable"
            assert s.err_type == want, s
            assert "database" in s.message and "not charged" in s.message, s.message
            for internal in ("asyncpg", "sqlite", "Traceback", "127.0.0.1", "Error"):
                assert internal not in s.message, s.message


@dataclass
class Money:
    expected: int  # Σ tokens × price of the 200 answers
    charged: int  # what the balance lost
    answered: int
    refused: int
    extra: dict[str, Any] = field(default_factory=dict)


def check_money(env: Any, account_id: int, start_balance: int, shots: list[Shot],
                prices: Prices) -> Money:
    """Σ charges = Σ tokens × price of the answered requests, each charged once; db verify
    clean; no pending record left (waits for the settlement retry queue to drain)."""
    from sqlalchemy import func, select

    from a2agent.billing.verify import verify
    from a2agent.store.models import LedgerEntry, RequestRecord

    env.gw.wait_idle(30)
    services = env.services

    async def facts() -> tuple[int, dict[str, tuple[str, int]], int]:
        async with services.db.read() as s:
            pending = await s.scalar(select(func.count()).where(RequestRecord.settled_at.is_(None)))
            recs = {r.id: (r.status, r.cost_micro)
                    for r in await s.scalars(select(RequestRecord)
                                             .where(RequestRecord.account_id == account_id))}
            charges = await s.scalar(select(func.count()).where(
                LedgerEntry.account_id == account_id, LedgerEntry.kind == "charge"))
        return int(pending or 0), recs, int(charges or 0)

    pending, records, charges = env.call(facts())
    assert pending == 0, f"{pending} pending record(s) left"
    problems = env.call(verify(services.db))
    assert problems == [], problems
    ok = [s for s in shots if s.status == 200]
    expected = 0
    for s in ok:
        cost = cost_micro(prices, s.input_tokens, s.output_tokens, 0, 0)
        expected += cost
        assert s.request_id in records, f"answered request {s.request_id} has no record"
        assert records[s.request_id] == ("ok", cost), (s.request_id, records[s.request_id], cost)
    for s in shots:
        if s.status != 200 and s.request_id in records:
            assert records[s.request_id][1] == 0, f"refused request {s.request_id} was charged"
    # a refused request was refused before any upstream call: nothing spent, nothing owed
    assert len(env.upstream.requests) == len(ok), (len(env.upstream.requests), len(ok))
    charged = start_balance - env.balance(account_id)
    assert charged == expected, f"charged {charged} µUSD, answered requests cost {expected}"
    assert charges == sum(1 for s in ok if cost_micro(prices, s.input_tokens, s.output_tokens, 0, 0))
    return Money(expected, charged, len(ok), len(shots) - len(ok))


def report(name: str, shots: list[Shot], fault: tuple[float, float], **numbers: Any) -> None:
    """One line per fault in test-artifacts/chaos.jsonl (the numbers for the closing note)."""
    during = Counter(s.status for s in shots if fault[0] <= s.t0 <= fault[1])
    line = {"fault": name, "outage_s": round(fault[1] - fault[0], 2), "requests": len(shots),
            "during_fault_by_status": dict(sorted(during.items())),
            "all_by_status": dict(sorted(Counter(s.status for s in shots).items())),
            "max_latency_s": round(max(s.latency for s in shots), 2),
            **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in numbers.items()}}
    RESULTS.parent.mkdir(exist_ok=True)
    with RESULTS.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    print(json.dumps(line))
