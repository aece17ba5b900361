"""Private PostgreSQL clusters and Redis servers for fault tests, which stop, kill and slow
them. The machine's shared servers are never touched: each test gets its own instance on a
free port, in its own directory, torn down afterwards.

PostgreSQL runs as the ``postgres`` user (``runuser``) since tests run as root; one
``initdb`` per session makes a template that each test copies (fsync off: speed only).
"""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.gateway import free_port


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def private_pg_unavailable() -> str | None:
    """Why a private cluster cannot be made here (None when it can)."""
    if _pg_bin() is None:
        return "PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed"
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return "private PostgreSQL clusters are started as the postgres user: needs root + runuser"
    return None


def _as_postgres(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], capture_output=True,
                          text=True, timeout=timeout, cwd="/tmp", check=False)


def make_template() -> Path:
    """An initdb'd data directory (owned by postgres) to copy for each cluster."""
    bin_dir = _pg_bin()
    assert bin_dir is not None
    root = Path(tempfile.mkdtemp(prefix="a2a-pg-template-", dir="/tmp"))
    shutil.chown(root, "postgres", "postgres")
    out = _as_postgres(str(bin_dir / "initdb"), "-D", str(root / "data"), "-A", "trust",
                       "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync")
    assert out.returncode == 0, out.stderr
    return root


class PrivatePostgres:
    """One cluster: ``start()``, ``stop()`` (fast), ``kill()`` (immediate), ``terminate_backends``."""

    def __init__(self, template: Path) -> None:
        self.bin = _pg_bin()
        assert self.bin is not None
        self.root = Path(tempfile.mkdtemp(prefix="a2a-pg-", dir="/tmp"))
        subprocess.run(["cp", "-a", str(template / "data"), str(self.root / "data")], check=True)
        shutil.chown(self.root, "postgres", "postgres")
        self.port = free_port()
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/a2a"

    def _ctl(self, *args: str) -> None:
        out = _as_postgres(str(self.bin / "pg_ctl"), "-D", str(self.root / "data"), *args)
        assert out.returncode == 0, out.stdout + out.stderr

    def start(self) -> None:
        opts = (f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.root} "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=60")
        self._ctl("-l", str(self.root / "log"), "-w", "-t", "30", "-o", opts, "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")

    def kill(self) -> None:
        self._ctl("-m", "immediate", "-w", "stop")

    def running(self) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def create_database(self) -> None:
        self.sql("CREATE DATABASE a2a")

    def sql(self, statement: str, db: str = "postgres") -> Any:
        import asyncpg

        async def run() -> Any:
            conn = await asyncpg.connect(self.admin_url.rsplit("/", 1)[0] + "/" + db)
            try:
                return await conn.fetch(statement)
            finally:
                await conn.close()

        return asyncio.run(run())

    def terminate_backends(self) -> int:
        """pg_terminate_backend on every client backend of this private cluster but ours."""
        rows = self.sql("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = 'a2a' AND pid <> pg_backend_pid()")
        return int(rows[0][0])

    def destroy(self) -> None:
        if self.running():
            try:
                self.kill()
            except AssertionError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    def __init__(self, directory: Path) -> None:
        self.exe = shutil.which("redis-server")
        assert self.exe, "redis-server is required"
        self.port = free_port()
        self.dir = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.proc = subprocess.Popen([self.exe, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(self.dir)],
                                     stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "private redis did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class CommitDropper:
    """A TCP proxy to PostgreSQL that, when armed, forwards the next ``COMMIT`` of a
    connection that writes request records (the gateway's hot path, not its heartbeat) to the
    server, then cuts the connection before the server's answer reaches the client: the
    client cannot know whether its transaction committed (it did)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.armed = False
        self.dropped = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            state = {"cut": False, "hot": False}
            threading.Thread(target=self._pump, args=(client, upstream, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, state, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict[str, bool], to_server: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if to_server and b"request_records" in data:
                    state["hot"] = True
                if to_server and self.armed and state["hot"] and b"COMMIT" in data.upper():
                    self.armed = False
                    state["cut"] = True  # the server's answer is never relayed
                    self.dropped += 1
                    dst.sendall(data)
                    time.sleep(0.3)  # the server commits meanwhile
                    break
                if state["cut"]:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()

    def close(self) -> None:
        self._server.close()
