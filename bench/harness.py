"""Processes for the data-plane benchmark: the scripted upstream, a prepared gateway data
dir, the gateway as a real `a2agent serve` process, its CPU clock, and its SQLite records.

Everything listens on 127.0.0.1 only; every wait here is bounded.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.support.remote import RemoteUpstream  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
PASSWORD = "bench-password-123"
EMAIL = "bench@example.com"
OPENAI_MODEL = "bench-model"
ANTHROPIC_MODEL = "bench-claude"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read().decode()
    # the command name (field 2) may contain spaces: split after its closing paren
    fields = raw[raw.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / CLK_TCK


def thread_cpu(pid: int) -> dict[int, tuple[float, float]]:
    """{tid: (user s, system s)} for every thread of the process."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            raw = (task / "stat").read_text()
        except OSError:
            continue
        f = raw[raw.rindex(")") + 2:].split()
        out[int(task.name)] = (int(f[11]) / CLK_TCK, int(f[12]) / CLK_TCK)
    return out


def spawn_upstream(cpus: set[int] | None = None, *args: str) -> RemoteUpstream:
    """The fast scripted upstream in its own process (no request recording); `args` are
    extra command-line options (e.g. --text)."""
    if cpus is None:
        return RemoteUpstream.spawn("--no-record", *args)
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)  # the child inherits the mask
    try:
        return RemoteUpstream.spawn("--no-record", *args)
    finally:
        os.sched_setaffinity(0, mine)


class CliError(RuntimeError):
    pass


def cli(data_dir: Path, *args: str, check: bool = True,
        env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, A2AGENT_DATA_DIR=str(data_dir), **(env_extra or {}))
    proc = subprocess.run([sys.executable, "-m", "a2agent.cli", *args], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise CliError(f"a2agent {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return proc


def prepare(data_dir: Path, upstream: RemoteUpstream, env_extra: dict[str, str] | None = None) -> str:
    """Account with a large balance, an OpenAI and an Anthropic channel, a model on each, and
    a key; returns the key. `env_extra` (e.g. A2AGENT_DATABASE_URL) applies to every step."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return cli(data_dir, *args, env_extra=env_extra)

    run("db", "upgrade")
    run("user", "create", EMAIL, "--password", PASSWORD, "--balance", "1000000")
    run("channel", "add", "up", "--protocol", "openai", "--base-url", upstream.openai_base)
    run("channel", "add", "up-anthropic", "--protocol", "anthropic",
        "--base-url", upstream.anthropic_base)
    run("model", "add", OPENAI_MODEL, "--channel", "up", "--upstream-model", "gpt-4o-mini",
        "--input-price", "1", "--output-price", "2")
    run("model", "add", ANTHROPIC_MODEL, "--channel", "up-anthropic",
        "--upstream-model", "claude-sonnet-4-5", "--input-price", "3", "--output-price", "15")
    out = run("key", "create", EMAIL).stdout.strip().splitlines()
    if not out:
        raise CliError("a2agent key create printed nothing")
    return out[-1].strip()


@dataclass
class Gateway:
    proc: subprocess.Popen
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self, timeout: float = 40.0) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()  # graceful: drains in-flight settlements
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start_gateway(data_dir: Path, cpus: set[int] | None = None, timeout: float = 60.0, *,
                  launcher: list[str] | None = None, extra_env: dict[str, str] | None = None,
                  serve_args: list[str] | None = None, log_name: str = "gateway.log") -> Gateway:
    """`a2agent serve` (or `launcher` + the same arguments) on a free loopback port, waited
    for until /readyz answers 200."""
    port = free_port()
    env = dict(os.environ, A2AGENT_DATA_DIR=str(data_dir), A2AGENT_ACCOUNT_MAX_CONCURRENCY="0",
               A2AGENT_LOCAL_MODEL="false", **(extra_env or {}))
    log_path = data_dir / log_name
    log = open(log_path, "wb")
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
    proc = subprocess.Popen(
        [*(launcher or [sys.executable, "-m", "a2agent.cli"]), "serve", "--host", "127.0.0.1", "--port", str(port),
         "--no-local-model", *(serve_args or [])],
        env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec,
    )
    log.close()
    gw = Gateway(proc, f"http://127.0.0.1:{port}", log_path)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gateway exited {proc.returncode}; see {log_path}:\n"
                                   + log_path.read_text()[-2000:])
            try:
                if client.get(gw.url + "/readyz").status_code == 200:
                    return gw
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                gw.stop()
                raise RuntimeError(f"gateway not ready within {timeout:g}s; see {log_path}")
            time.sleep(0.1)


class Records:
    """Read-only look at the gateway's SQLite file (WAL: does not block its writer)."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path

    def _query(self, sql: str) -> tuple:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            return conn.execute(sql).fetchone()
        finally:
            conn.close()

    def settled(self) -> tuple[int, int]:
        n, cost = self._query(
            "select count(*), coalesce(sum(cost_micro), 0) from request_records where settled_at is not null")
        return int(n), int(cost)

    def by_status(self) -> dict[str, int]:
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=30)
        try:
            return {s: n for s, n in conn.execute("select status, count(*) from request_records group by status")}
        finally:
            conn.close()

    def wait_settled(self, expected: int, timeout: float = 60.0) -> float:
        """Poll until `expected` records are settled; returns the seconds waited (bounded)."""
        t0 = time.monotonic()
        while True:
            if self.settled()[0] >= expected:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"only {self.settled()[0]} of {expected} request records settled "
                                   f"after {timeout:g}s")
            time.sleep(0.02)
