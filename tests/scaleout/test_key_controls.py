"""Key controls hold on the very next request on every instance, like deletion: two gateway
processes on PostgreSQL + Redis under steady load while the CLI disables / enables a key, gives
it a model allow-list, a spend cap and an expiry. Each change is checked on every request that
started after the command returned, on both instances."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import httpx
import pytest

from tests.conftest import run_cli
from tests.scaleout.test_instances import REDIS_URL, Cluster, _cluster, _flush, _setup_tenant
from tests.support.upstream import ScriptedUpstream

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def pair(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    _flush(REDIS_URL)
    yield from _cluster(tmp_path, pg_url, REDIS_URL, n=2)


@dataclass
class Shot:
    started: float
    node: int
    status: int
    code: str | None


class Load:
    """Threads sending chat requests with one key to both nodes in turn."""

    def __init__(self, c: Cluster, key: str, threads: int = 4) -> None:
        self.c, self.key = c, key
        self.shots: list[Shot] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def _run(self, offset: int) -> None:
        clients = [httpx.Client(base_url=n.url, timeout=20) for n in self.c.nodes]
        i = offset
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            node = i % len(clients)
            i += 1
            started = time.monotonic()
            r = clients[node].post("/v1/chat/completions",
                                   headers={"authorization": f"Bearer {self.key}"},
                                   json={"model": "m", "messages": [{"role": "user", "content": "hi"}]})
            code = None if r.status_code == 200 else r.json()["error"]["code"]
            self.shots.append(Shot(started, node, r.status_code, code))

    def __enter__(self) -> Self:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def change(self, *args: str) -> tuple[float, list[Shot]]:
        """Run a CLI change, then collect 30 requests that started after it returned."""
        self.c.cli(*args)
        changed = time.monotonic()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            late = [s for s in list(self.shots) if s.started > changed]
            if len(late) >= 30:
                return changed, late
            time.sleep(0.02)
        raise AssertionError("load stalled")


def test_key_controls_hold_on_every_instance_at_once(pair: Cluster) -> None:
    c = pair
    with ScriptedUpstream(default_text="ok") as up:
        c.cli("channel", "add", "A", "--protocol", "openai", "--base-url", up.openai_base)
        c.cli("model", "add", "m", "--channel", "A", "--input-price", "1", "--output-price", "1")
        c.cli("model", "add", "other", "--channel", "A", "--input-price", "1", "--output-price", "1")
        key = _setup_tenant(c, "ctl@example.com")
        key_id = str(json.loads(c.cli("key", "list", "ctl@example.com", "--json"))[0]["id"])

        def expect(late: list[Shot], status: int, code: str | None) -> None:
            assert {(s.status, s.code) for s in late} == {(status, code)}, late[:5]
            assert {s.node for s in late} == {0, 1}

        with Load(c, key) as load:
            expect(load.change("key", "update", key_id, "--name", "renamed")[1], 200, None)
            expect(load.change("key", "update", key_id, "--disable")[1], 403, "key_disabled")
            expect(load.change("key", "update", key_id, "--enable")[1], 200, None)
            expect(load.change("key", "update", key_id, "--models", "other")[1],
                   404, "model_not_found")
            expect(load.change("key", "update", key_id, "--models", "all")[1], 200, None)
            # the key has spent more than a millionth of a dollar by now
            expect(load.change("key", "update", key_id, "--cap", "0.000001",
                               "--cap-period", "monthly")[1], 403, "key_limit_reached")
            expect(load.change("key", "update", key_id, "--cap", "none")[1], 200, None)
            expect(load.change("key", "update", key_id, "--expires", "2001-01-01")[1],
                   401, "key_expired")
            expect(load.change("key", "update", key_id, "--expires", "never")[1], 200, None)

        # /v1/models follows the allow-list on both instances
        c.cli("key", "update", key_id, "--models", "other")
        for node in c.nodes:
            r = httpx.get(node.url + "/v1/models", headers={"authorization": f"Bearer {key}"})
            assert [m["id"] for m in r.json()["data"]] == ["other"]
        shown = json.loads(c.cli("key", "update", key_id, "--name", "final", "--json"))
        assert shown["name"] == "final" and shown["allowed_models"] == ["other"]

    out = run_cli("db", "verify", env=c.env)
    assert out.returncode == 0, out.stdout + out.stderr
