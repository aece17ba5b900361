"""Edge hardening (issue 13): /metrics behind a bearer token, X-Forwarded-For believed only from
trusted proxies, HSTS on an https deployment, a private data directory and database file."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx

from tests.conftest import _env
from tests.dataplane.conftest import MSGS, Tenant
from tests.support.upstream import ScriptedUpstream

TOKEN = "metrics-" + "t" * 24


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_metrics_token_hsts_untrusted_forwarded_for_and_private_files(tmp_path):
    with ScriptedUpstream() as up:
        for env in _env(tmp_path, up, None, metrics_token=TOKEN, public_url="https://gw.example.com"):
            assert httpx.get(env.url + "/metrics").status_code == 401
            assert httpx.get(env.url + "/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
            r = httpx.get(env.url + "/metrics", headers={"authorization": f"Bearer {TOKEN}"})
            assert r.status_code == 200 and "a2agent" in r.text
            # HSTS everywhere when the public URL is https
            for path in ("/healthz", "/login", "/v1/models"):
                assert "max-age=" in httpx.get(env.url + path).headers["strict-transport-security"]
            # no trusted proxy configured: a client's X-Forwarded-For is not believed
            t = Tenant(env)
            r = httpx.post(env.url + "/v1/chat/completions", json={"model": "gpt-test", "messages": MSGS},
                           headers={"authorization": f"Bearer {t.key}", "x-forwarded-for": "203.0.113.9"})
            assert r.status_code == 200
            assert t.only_record().client_ip == "127.0.0.1"
            t.close()
            data = tmp_path / "data"
            assert _mode(data) == 0o700
            assert _mode(data / "a2agent.db") == 0o600
            assert _mode(data / "secret_key") == 0o600


def test_forwarded_for_believed_from_a_trusted_proxy_and_no_hsts_on_http(tmp_path):
    with ScriptedUpstream() as up:
        for env in _env(tmp_path, up, None, trusted_proxies="127.0.0.1"):
            t = Tenant(env)
            r = httpx.post(env.url + "/v1/chat/completions", json={"model": "gpt-test", "messages": MSGS},
                           headers={"authorization": f"Bearer {t.key}", "x-forwarded-for": "203.0.113.9"})
            assert r.status_code == 200 and "strict-transport-security" not in r.headers
            assert t.only_record().client_ip == "203.0.113.9"
            t.close()
            # no token set: metrics for loopback peers only (here: the test itself)
            assert httpx.get(env.url + "/metrics").status_code == 200
