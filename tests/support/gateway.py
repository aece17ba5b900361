"""Run the gateway for tests: in-process on a background thread (real HTTP on loopback),
or as a real `a2agent serve` subprocess (for kill/restart and multi-instance tests)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from a2agent.app import Gateway, create_app
from a2agent.config import Settings, load_settings
from a2agent.server import proxy_options
from a2agent.store.db import upgrade_sync

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_settings(data_dir: Path, database_url: str | None = None, **overrides: Any) -> Settings:
    env = {"A2AGENT_DATA_DIR": str(data_dir)}
    if database_url:
        env["A2AGENT_DATABASE_URL"] = database_url
    overrides.setdefault("local_model", False)
    overrides.setdefault("port", free_port())
    return load_settings(environ=env, overrides=overrides)


class ThreadedGateway:
    """uvicorn serving create_app(settings) on its own event loop in a thread."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        upgrade_sync(settings.database_url)
        self.gateway = Gateway(settings)
        self.app = create_app(settings, self.gateway)
        config = uvicorn.Config(self.app, host="127.0.0.1", port=settings.port, log_level="warning",
                                access_log=False, loop="asyncio", lifespan="on",
                                timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
                                **proxy_options(settings))
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.server.serve())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    def start(self) -> "ThreadedGateway":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.02)
        return self

    def call(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the gateway's loop (e.g. service calls) and wait for it."""
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def wait_idle(self, timeout: float = 15) -> None:
        """Wait until every settlement/drain task finished (no sleeps as synchronisation)."""
        ok = self.call(self.gateway.tasks.drain(timeout), timeout + 5)
        assert ok, "background tasks did not finish"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def __enter__(self) -> "ThreadedGateway":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class GatewayProcess:
    """A real `a2agent serve` process."""

    def __init__(self, data_dir: Path, port: int | None = None, env: dict[str, str] | None = None,
                 args: tuple[str, ...] = ("--no-local-model",)) -> None:
        self.port = port or free_port()
        self.data_dir = data_dir
        self.env = {**os.environ, "A2AGENT_DATA_DIR": str(data_dir), **(env or {})}
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "GatewayProcess":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "a2agent.cli", "serve", "--port", str(self.port), *self.args],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gateway exited:\n" + "".join(self.output))
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("gateway did not become ready:\n" + "".join(self.output))

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def __enter__(self) -> "GatewayProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
