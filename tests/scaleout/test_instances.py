"""Three gateway processes on the machine's PostgreSQL and Redis behave as one: key deletion,
suspension and channel changes hold on the very next request everywhere; rate limits are
shared; billing stays exact across instances; Redis going away never serves stale auth."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.conftest import run_cli
from tests.support.gateway import GatewayProcess, free_port
from tests.support.upstream import ScriptedUpstream

REDIS_URL = os.environ.get("A2AGENT_TEST_REDIS", "redis://127.0.0.1:6379/7")


def _flush(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


@dataclass
class Cluster:
    env: dict[str, str]
    nodes: list[GatewayProcess]

    def cli(self, *args: str) -> str:
        result = run_cli(*args, env=self.env)
        assert result.returncode == 0, result.stderr
        return result.stdout


def _cluster(tmp_path: Path, db: str, redis_url: str, n: int = 3) -> Iterator[Cluster]:
    env = {"A2AGENT_DATA_DIR": str(tmp_path / "data"), "A2AGENT_DATABASE_URL": db,
           "A2AGENT_REDIS_URL": redis_url, "A2AGENT_DISCONNECT_DRAIN_SECONDS": "2",
           "A2AGENT_DB_POOL_SIZE": "4", "A2AGENT_DB_MAX_OVERFLOW": "4"}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    nodes = [GatewayProcess(tmp_path / "data", env=env) for _ in range(n)]
    try:
        for node in nodes:
            node.start()
        yield Cluster(env, nodes)
    finally:
        for node in nodes:
            node.__exit__(None, None, None)


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    _flush(REDIS_URL)
    yield from _cluster(tmp_path, pg_url, REDIS_URL)


@dataclass
class Shot:
    started: float
    node: int
    status: int
    served_by: str | None


class Hammer:
    """Concurrent clients sending to every node in turn until stopped (bounded in time)."""

    def __init__(self, nodes: list[GatewayProcess], key: str, model: str, threads: int = 6) -> None:
        self.nodes, self.key, self.model = nodes, key, model
        self.shots: list[Shot] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, offset: int) -> None:
        clients = [httpx.Client(base_url=n.url, timeout=20) for n in self.nodes]
        i = offset
        deadline = time.monotonic() + 60
        while not self._stop.is_set() and time.monotonic() < deadline:
            node = i % len(self.nodes)
            i += 1
            started = time.monotonic()
            r = clients[node].post("/v1/chat/completions", headers={"authorization": f"Bearer {self.key}"},
                                   json={"model": self.model, "messages": [{"role": "user", "content": "hi"}]})
            served = r.json()["choices"][0]["message"]["content"] if r.status_code == 200 else None
            self.shots.append(Shot(started, node, r.status_code, served))

    def __enter__(self) -> "Hammer":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def wait_for(self, n: int) -> None:
        deadline = time.monotonic() + 30
        while len(self.shots) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.shots) >= n, "load did not get going"


def _setup_tenant(c: Cluster, email: str) -> str:
    c.cli("user", "create", email, "--password", "password123", "--balance", "100")
    return c.cli("key", "create", email).strip().splitlines()[-1]


def test_changes_hold_on_every_instance_at_once(cluster: Cluster) -> None:
    c = cluster
    with ScriptedUpstream(default_text="from-A") as up_a, ScriptedUpstream(default_text="from-B") as up_b:
        c.cli("channel", "add", "A", "--protocol", "openai", "--base-url", up_a.openai_base)
        c.cli("channel", "add", "B", "--protocol", "openai", "--base-url", up_b.openai_base)
        c.cli("model", "add", "m", "--channel", "A", "--input-price", "1", "--output-price", "1")
        doomed_key = _setup_tenant(c, "doomed@example.com")
        suspended_key = _setup_tenant(c, "suspended@example.com")
        moving_key = _setup_tenant(c, "moving@example.com")
        doomed_id = json.loads(c.cli("key", "list", "doomed@example.com", "--json"))[0]["id"]

        with Hammer(c.nodes, doomed_key, "m") as h1, Hammer(c.nodes, suspended_key, "m") as h2, \
                Hammer(c.nodes, moving_key, "m") as h3:
            for h in (h1, h2, h3):
                h.wait_for(30)
            c.cli("key", "delete", str(doomed_id))
            t_delete = time.monotonic()
            c.cli("user", "suspend", "suspended@example.com")
            t_suspend = time.monotonic()
            # move the model: route on B, then drop channel A (and its route)
            c.cli("model", "add", "m", "--channel", "B", "--input-price", "1", "--output-price", "1")
            c.cli("channel", "remove", "A")
            t_move = time.monotonic()
            for h in (h1, h2, h3):
                before = len(h.shots)
                h.wait_for(before + 30)

        late_doomed = [s for s in h1.shots if s.started > t_delete]
        assert late_doomed and all(s.status == 401 for s in late_doomed), "a deleted key was served"
        assert {s.node for s in late_doomed} == {0, 1, 2}
        late_susp = [s for s in h2.shots if s.started > t_suspend]
        assert late_susp and all(s.status == 403 for s in late_susp), "a suspended account was served"
        late_moved = [s for s in h3.shots if s.started > t_move]
        assert late_moved and all(s.status == 200 and s.served_by == "from-B" for s in late_moved)
        assert any(s.served_by == "from-A" for s in h3.shots if s.started < t_delete)

    out = run_cli("db", "verify", env=c.env)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rate_limit_is_shared_across_instances(cluster: Cluster) -> None:
    c = cluster
    with ScriptedUpstream() as up:
        c.cli("channel", "add", "up", "--protocol", "openai", "--base-url", up.openai_base)
        c.cli("model", "add", "m", "--channel", "up", "--input-price", "1", "--output-price", "1")
        key = _setup_tenant(c, "limited@example.com")
        c.cli("user", "limits", "limited@example.com", "--rpm", "60")
        statuses: list[int] = []
        headers: list[httpx.Headers] = []
        clients = [httpx.Client(base_url=n.url, timeout=20) for n in c.nodes]
        for i in range(180):
            r = clients[i % 3].post("/v1/chat/completions" if i % 2 else "/v1/messages",
                                    headers={"authorization": f"Bearer {key}", "anthropic-version": "2023-06-01"},
                                    json={"model": "m", "max_tokens": 5,
                                          "messages": [{"role": "user", "content": "hi"}]})
            statuses.append(r.status_code)
            if r.status_code == 429:
                headers.append(r.headers)
        assert statuses.count(200) == 60, statuses
        assert statuses.count(429) == 120
        h = headers[0]
        assert int(h["retry-after"]) >= 1
        assert h["x-ratelimit-limit-requests"] == "60" and h["x-ratelimit-remaining-requests"] == "0"
        assert h["x-ratelimit-reset-requests"].endswith("s")


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    exe = shutil.which("redis-server")
    assert exe, "redis-server is required"
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    import redis

    while True:
        try:
            redis.Redis(port=port).ping()
            break
        except redis.ConnectionError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0", proc
    proc.kill()
    proc.wait()


def test_redis_stopping_never_serves_stale_auth(tmp_path: Path, pg_url: str, private_redis) -> None:
    redis_url, redis_proc = private_redis
    gen = _cluster(tmp_path, pg_url, redis_url, n=2)
    c = next(gen)
    try:
        with ScriptedUpstream() as up:
            c.cli("channel", "add", "up", "--protocol", "openai", "--base-url", up.openai_base)
            c.cli("model", "add", "m", "--channel", "up", "--input-price", "1", "--output-price", "1")
            key = _setup_tenant(c, "r@example.com")
            other = _setup_tenant(c, "r2@example.com")
            key_id = json.loads(c.cli("key", "list", "r@example.com", "--json"))[0]["id"]
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            for node in c.nodes:
                assert httpx.post(node.url + "/v1/chat/completions", json=body,
                                  headers={"authorization": f"Bearer {key}"}).status_code == 200
            redis_proc.kill()
            redis_proc.wait()
            c.cli("key", "delete", str(key_id))
            c.cli("user", "suspend", "r2@example.com")
            for node in c.nodes:
                for _ in range(3):
                    r = httpx.post(node.url + "/v1/chat/completions", json=body,
                                   headers={"authorization": f"Bearer {key}"}, timeout=20)
                    assert r.status_code == 401
                    r = httpx.post(node.url + "/v1/chat/completions", json=body,
                                   headers={"authorization": f"Bearer {other}"}, timeout=20)
                    assert r.status_code == 403
            c.cli("user", "unsuspend", "r2@example.com")
            r = httpx.post(c.nodes[0].url + "/v1/chat/completions", json=body,
                           headers={"authorization": f"Bearer {other}"}, timeout=20)
            assert r.status_code == 200  # served with fresh auth, limits counted per instance meanwhile
            assert httpx.get(c.nodes[1].url + "/readyz").status_code == 200
    finally:
        gen.close()


def test_workers_share_state(tmp_path: Path, pg_url: str) -> None:
    _flush(REDIS_URL)
    env = {"A2AGENT_DATA_DIR": str(tmp_path / "data"), "A2AGENT_DATABASE_URL": pg_url,
           "A2AGENT_REDIS_URL": REDIS_URL}
    with ScriptedUpstream() as up:
        for args in (("channel", "add", "up", "--protocol", "openai", "--base-url", up.openai_base),
                     ("model", "add", "m", "--channel", "up", "--input-price", "1", "--output-price", "1"),
                     ("user", "create", "w@example.com", "--password", "password123", "--balance", "5")):
            assert run_cli(*args, env=env).returncode == 0
        key = run_cli("key", "create", "w@example.com", env=env).stdout.strip().splitlines()[-1]
        with GatewayProcess(tmp_path / "data", env=env, args=("--no-local-model", "--workers", "2")) as gw:
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            auth = {"authorization": f"Bearer {key}"}
            with httpx.Client(base_url=gw.url, timeout=20) as client:
                assert all(client.post("/v1/chat/completions", json=body, headers=auth).status_code == 200
                           for _ in range(10))
            assert run_cli("user", "suspend", "w@example.com", env=env).returncode == 0
            for _ in range(10):  # fresh connections land on either worker
                assert httpx.post(gw.url + "/v1/chat/completions", json=body, headers=auth).status_code == 403
            gw.terminate(60)
        assert run_cli("db", "verify", env=env).returncode == 0


def test_token_limit_answers_429_with_both_header_trios(cluster: Cluster) -> None:
    c = cluster
    with ScriptedUpstream() as up:
        c.cli("channel", "add", "up", "--protocol", "openai", "--base-url", up.openai_base)
        c.cli("model", "add", "m", "--channel", "up", "--input-price", "1", "--output-price", "1")
        key = _setup_tenant(c, "tokens@example.com")
        c.cli("user", "limits", "tokens@example.com", "--rpm", "1000", "--tpm", "40")
        body = {"model": "m", "messages": [{"role": "user", "content": "x" * 200}]}
        auth = {"authorization": f"Bearer {key}"}
        statuses = []
        last = None
        for i in range(6):
            node = c.nodes[i % 3]
            r = httpx.post(node.url + "/v1/chat/completions", json=body, headers=auth, timeout=20)
            statuses.append(r.status_code)
            if r.status_code == 429:
                last = r
                break
            # the tokens are counted when the request settles: wait for it on that node
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                usage = httpx.get(node.url + "/v1/usage", headers=auth).json()
                if usage["total"]["requests"] == i + 1:
                    break
                time.sleep(0.05)
        assert last is not None, statuses
        assert last.json()["error"]["code"] == "rate_limit_exceeded"
        h = last.headers
        assert h["x-ratelimit-limit-tokens"] == "40" and h["x-ratelimit-remaining-tokens"] == "0"
        assert h["x-ratelimit-limit-requests"] == "1000" and int(h["retry-after"]) >= 1
