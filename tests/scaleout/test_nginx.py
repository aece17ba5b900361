"""The sample nginx config in deploy/ in front of two instances: streams are not buffered,
the recorded client IP cannot be spoofed, and a change holds through either instance."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import run_cli
from tests.support.gateway import REPO_ROOT, GatewayProcess, free_port
from tests.support.script import Script
from tests.support.upstream import ScriptedUpstream


@pytest.fixture
def nginx_bin() -> str:
    exe = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if exe is None:
        pytest.fail("nginx is required (scripts/test installs it from Debian)")
    return exe


def _start_nginx(exe: str, prefix: Path, ports: list[int]) -> tuple[subprocess.Popen, int]:
    sample = (REPO_ROOT / "deploy/nginx.conf").read_text()
    sample = re.sub(r"    server 127\.0\.0\.1:8003 max_fails=0;\n", "", sample)
    servers = iter(ports)
    sample = re.sub(r"server 127\.0\.0\.1:800\d", lambda m: f"server 127.0.0.1:{next(servers)}", sample)
    listen = free_port()
    sample = sample.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    (prefix / "logs").mkdir(parents=True)
    (prefix / "a2agent.conf").write_text(sample)
    (prefix / "nginx.conf").write_text(
        "worker_processes 1;\npid nginx.pid;\nerror_log logs/error.log;\nevents {}\nhttp {\n"
        "  access_log off;\n  client_body_temp_path tmp;\n  proxy_temp_path tmp;\n"
        "  include a2agent.conf;\n}\n")
    (prefix / "tmp").mkdir()
    proc = subprocess.Popen([exe, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"])
    deadline = time.monotonic() + 10
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{listen}/healthz", timeout=1)
            return proc, listen
        except httpx.HTTPError:
            assert proc.poll() is None and time.monotonic() < deadline, "nginx did not start"
            time.sleep(0.05)


def test_two_instances_behind_the_sample_nginx_config(tmp_path: Path, nginx_bin: str) -> None:
    env = {"A2AGENT_DATA_DIR": str(tmp_path / "data")}
    with ScriptedUpstream() as up:
        for args in (("channel", "add", "up", "--protocol", "openai", "--base-url", up.openai_base),
                     ("model", "add", "m", "--channel", "up", "--input-price", "1", "--output-price", "1"),
                     ("user", "create", "n@example.com", "--password", "password123", "--balance", "5")):
            assert run_cli(*args, env=env).returncode == 0
        key = run_cli("key", "create", "n@example.com", env=env).stdout.strip().splitlines()[-1]
        with GatewayProcess(tmp_path / "data") as a, GatewayProcess(tmp_path / "data") as b:
            proc, port = _start_nginx(nginx_bin, tmp_path / "nginx", [a.port, b.port])
            base = f"http://127.0.0.1:{port}"
            try:
                auth = {"authorization": f"Bearer {key}", "x-forwarded-for": "203.0.113.9"}
                up.enqueue(Script(text=" ".join(f"w{i}" for i in range(20)), chunk_delay=0.1))
                body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
                started = time.monotonic()
                with httpx.stream("POST", base + "/v1/chat/completions", json=body, headers=auth, timeout=30) as r:
                    first_at = None
                    for _ in r.iter_raw():
                        first_at = first_at or time.monotonic() - started
                    total = time.monotonic() - started
                assert r.status_code == 200
                assert first_at is not None and first_at < total / 2, "nginx buffered the stream"
                plain = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                assert all(httpx.post(base + "/v1/chat/completions", json=plain, headers=auth).status_code == 200
                           for _ in range(4))
                key_id = json.loads(run_cli("key", "list", "n@example.com", "--json", env=env).stdout)[0]["id"]
                assert run_cli("key", "delete", str(key_id), env=env).returncode == 0
                assert [httpx.post(base + "/v1/chat/completions", json=plain, headers=auth).status_code
                        for _ in range(4)] == [401] * 4
            finally:
                proc.terminate()
                proc.wait(10)
    con = sqlite3.connect(tmp_path / "data" / "a2agent.db")
    ips = {row[0] for row in con.execute("select client_ip from request_records")}
    con.close()
    assert ips == {"127.0.0.1"}, ips  # the spoofed X-Forwarded-For was overwritten by nginx
