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


LEAKY = ("Incorrect API key provided: sk-proj-ABCDEFGH12345678abcd for model {model} at "
         "https://internal-llm.corp.example.com/v1 (10.1.2.3:8443); request id a1b2c3d4e5f6a7b8c9d0e1f2a3b4")


def test_upstream_error_text_is_sanitised_and_names_our_model(denv, tenant):
    from tests.support import Script

    for path, model, upstream_model in (
            ("/v1/chat/completions", "gpt-test", "gpt-4o-mini"),
            ("/v1/messages", "claude-test", "claude-sonnet-4-5")):
        denv.upstream.enqueue(Script(status=400, error_message=LEAKY.format(model=upstream_model)))
        body = {"model": model, "messages": MSGS, "max_tokens": 16}
        r = httpx.post(denv.url + path, json=body, headers={"authorization": f"Bearer {tenant.key}"})
        assert r.status_code == 400
        message = r.json()["error"]["message"]
        for leak in ("sk-proj", "ABCDEFGH", "internal-llm", "corp.example", "10.1.2.3", upstream_model,
                     "a1b2c3d4e5"):
            assert leak not in message, (leak, message)
        assert f"for model {model} at" in message and "Incorrect API key provided" in message


def test_ratelimit_headers_on_successful_responses_when_limits_apply(denv, tenant):
    r = httpx.post(denv.url + "/v1/chat/completions", json={"model": "gpt-test", "messages": MSGS},
                   headers={"authorization": f"Bearer {tenant.key}"})
    assert r.status_code == 200 and not any(h.startswith("x-ratelimit") for h in r.headers)
    denv.call(denv.services.accounts.set_limits(tenant.id, rpm=5, tpm=100_000))
    for stream, remaining in ((False, "4"), (True, "3")):
        r = httpx.post(denv.url + "/v1/chat/completions", headers={"authorization": f"Bearer {tenant.key}"},
                       json={"model": "gpt-test", "messages": MSGS, "stream": stream})
        assert r.status_code == 200
        assert r.headers["x-ratelimit-limit-requests"] == "5"
        assert r.headers["x-ratelimit-remaining-requests"] == remaining
        assert r.headers["x-ratelimit-reset-requests"].endswith("s")
        assert r.headers["x-ratelimit-limit-tokens"] == "100000"


def test_channel_credentials_are_sealed_at_rest(tmp_path):
    import sqlite3

    from a2agent.auth.sealing import PREFIX

    with ScriptedUpstream() as up:
        for env in _env(tmp_path, up, None):
            db = tmp_path / "data" / "a2agent.db"

            def stored(db: Path = db) -> dict[str, str]:
                con = sqlite3.connect(db)
                try:
                    return dict(con.execute("select name, api_key from channels"))
                finally:
                    con.close()

            rows = stored()
            assert rows["oai"].startswith(PREFIX) and "upstream-oai" not in rows["oai"]
            # a row written before sealing existed (plain text) still works, and is sealed at start
            con = sqlite3.connect(db)
            con.execute("update channels set api_key = 'legacy-plain-key' where name = 'ant'")
            con.commit()
            con.close()
            env.call(env.services.catalog.update_channel("ant", priority=0))  # a new catalog version
            t = Tenant(env)
            r = httpx.post(env.url + "/v1/messages", headers={"x-api-key": t.key},
                           json={"model": "claude-test", "max_tokens": 8, "messages": MSGS})
            assert r.status_code == 200
            assert env.upstream.requests[-1].headers["x-api-key"] == "legacy-plain-key"
            assert env.call(env.services.catalog.seal_credentials()) == 1
            assert stored()["ant"].startswith(PREFIX)
            assert env.call(env.services.catalog.get_channel("ant")).api_key == "legacy-plain-key"
            r = httpx.post(env.url + "/v1/chat/completions", headers={"authorization": f"Bearer {t.key}"},
                           json={"model": "gpt-test", "messages": MSGS})
            assert r.status_code == 200
            assert env.upstream.requests[-1].headers["authorization"] == "Bearer upstream-oai"
            t.close()
