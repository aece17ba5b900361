"""Every CLI command exactly as documented, including bad input, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import run_cli
from tests.support.gateway import ThreadedGateway, make_settings


@pytest.fixture
def cli_env(tmp_path: Path, db_url: str) -> dict[str, str]:
    return {"A2AGENT_DATA_DIR": str(tmp_path / "data"), "A2AGENT_DATABASE_URL": db_url}


def ok(*args: str, env: dict[str, str]) -> str:
    result = run_cli(*args, env=env)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def fails(*args: str, env: dict[str, str], code: int = 1) -> str:
    result = run_cli(*args, env=env)
    assert result.returncode == code, f"{args} exited {result.returncode}: {result.stdout}{result.stderr}"
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert lines, "an error must say what is wrong"
    return result.stderr


def test_user_lifecycle(cli_env: dict[str, str]) -> None:
    out = ok("user", "create", "Alice@Example.com", "--password", "s3cret-pass", "--balance", "12.5", env=cli_env)
    assert "alice@example.com" in out
    shown = json.loads(ok("user", "show", "alice@example.com", "--json", env=cli_env))
    assert shown["email"] == "alice@example.com"
    assert shown["suspended"] is False
    assert shown["balance_micro_usd"] == 12_500_000
    assert shown["balance_usd"] == "12.500000"

    assert "already exists" in fails("user", "create", "alice@example.com", "--password", "x" * 10, env=cli_env)
    assert "no account" in fails("user", "show", "nobody@example.com", env=cli_env)
    assert "no account" in fails("user", "topup", "nobody@example.com", "5", env=cli_env)
    assert "not a USD amount" in fails("user", "topup", "alice@example.com", "five", env=cli_env)
    assert "6 decimal" in fails("user", "topup", "alice@example.com", "0.0000001", env=cli_env)

    ok("user", "topup", "alice@example.com", "2.25", "--note", "promo", env=cli_env)
    ok("user", "topup", "alice@example.com", "-1.75", "--note", "correction", env=cli_env)
    assert json.loads(ok("user", "show", "alice@example.com", "--json", env=cli_env))["balance_micro_usd"] == 13_000_000

    ok("user", "suspend", "alice@example.com", env=cli_env)
    assert json.loads(ok("user", "show", "alice@example.com", "--json", env=cli_env))["suspended"] is True
    ok("user", "unsuspend", "alice@example.com", env=cli_env)
    assert json.loads(ok("user", "show", "alice@example.com", "--json", env=cli_env))["suspended"] is False

    ok("user", "create", "bob@example.com", "--admin", env=cli_env)  # generated password is printed
    users = json.loads(ok("user", "list", "--json", env=cli_env))
    assert [u["email"] for u in users] == ["alice@example.com", "bob@example.com"]
    assert users[1]["admin"] is True
    ok("user", "limits", "alice@example.com", "--rpm", "60", "--tpm", "1000", env=cli_env)
    shown = json.loads(ok("user", "show", "alice@example.com", "--json", env=cli_env))
    assert (shown["rpm_limit"], shown["tpm_limit"]) == (60, 1000)
    fails("user", "create", "not-an-email", env=cli_env)
    ok("db", "verify", env=cli_env)


def test_keys(cli_env: dict[str, str]) -> None:
    ok("user", "create", "k@example.com", "--password", "password123", env=cli_env)
    out = ok("key", "create", "k@example.com", "--label", "laptop", env=cli_env)
    key = out.strip().splitlines()[-1]
    assert key.startswith("sk-a2a-") and len(key) >= 7 + 32
    listed = json.loads(ok("key", "list", "k@example.com", "--json", env=cli_env))
    assert len(listed) == 1
    item = listed[0]
    assert {"id", "name", "created", "last_used"} <= item.keys()
    assert item["name"] == "laptop"
    assert item["masked_key"] == f"{key[:11]}…{key[-4:]}"
    assert key not in json.dumps(listed, ensure_ascii=False)
    second = ok("key", "create", "k@example.com", env=cli_env).strip().splitlines()[-1]
    assert second != key
    assert "no account" in fails("key", "create", "ghost@example.com", env=cli_env)
    ok("key", "delete", str(item["id"]), env=cli_env)
    assert [k["name"] for k in json.loads(ok("key", "list", "k@example.com", "--json", env=cli_env))] == ["key-2"]
    assert "no API key" in fails("key", "delete", str(item["id"]), env=cli_env)
    fails("key", "delete", "abc", env=cli_env, code=2)


def test_channels_models_codes(cli_env: dict[str, str]) -> None:
    ok("channel", "add", "ds", "--protocol", "openai", "--base-url", "https://api.deepseek.com/v1",
       "--api-key", "sk-upstream-secret", "--priority", "2", "--weight", "3", env=cli_env)
    ok("channel", "add", "anth", "--protocol", "anthropic", "--base-url", "https://api.anthropic.com", env=cli_env)
    ok("channel", "add", "oai-resp", "--protocol", "responses", "--base-url", "https://api.openai.com/v1",
       env=cli_env)
    assert "responses" in ok("channel", "add", "--help", env=cli_env)
    ok("channel", "remove", "oai-resp", env=cli_env)
    assert "already exists" in fails("channel", "add", "ds", "--protocol", "openai", "--base-url",
                                     "http://x/v1", env=cli_env)
    fails("channel", "add", "bad", "--protocol", "grpc", "--base-url", "http://x", env=cli_env, code=2)
    assert "http" in fails("channel", "add", "bad", "--protocol", "openai", "--base-url", "ftp://x", env=cli_env)
    channels = json.loads(ok("channel", "list", "--json", env=cli_env))
    assert [(c["name"], c["protocol"], c["priority"], c["weight"]) for c in channels] == [
        ("ds", "openai", 2, 3), ("anth", "anthropic", 0, 1)]
    assert "sk-upstream-secret" not in ok("channel", "list", env=cli_env)

    ok("model", "add", "deepseek-chat", "--channel", "ds", "--input-price", "0.27", "--output-price", "1.10",
       "--cache-read-price", "0.07", "--context-window", "65536", "--max-output", "8192", env=cli_env)
    ok("model", "add", "deepseek-chat", "--channel", "anth", "--upstream-model", "claude-x",
       "--input-price", "0.27", "--output-price", "1.10", env=cli_env)
    assert "no channel" in fails("model", "add", "m2", "--channel", "nope", "--input-price", "1",
                                 "--output-price", "1", env=cli_env)
    assert "bad input price" in fails("model", "add", "m2", "--channel", "ds", "--input-price", "cheap",
                                      "--output-price", "1", env=cli_env)
    assert "negative" in fails("model", "add", "m2", "--channel", "ds", "--input-price", "-1",
                               "--output-price", "1", env=cli_env)
    models = json.loads(ok("model", "list", "--json", env=cli_env))
    assert len(models) == 1
    m = models[0]
    assert m["id"] == "deepseek-chat" and m["context_window"] == 65536 and m["max_output_tokens"] == 8192
    assert (m["input_price"], m["output_price"], m["cache_read_price"]) == ("0.270000", "1.100000", "0.070000")
    assert sorted(r["channel"] for r in m["routes"]) == ["anth", "ds"]
    ok("model", "remove", "deepseek-chat", env=cli_env)
    assert json.loads(ok("model", "list", "--json", env=cli_env)) == []
    assert "no model" in fails("model", "remove", "deepseek-chat", env=cli_env)
    ok("channel", "remove", "anth", env=cli_env)
    assert "no channel" in fails("channel", "remove", "anth", env=cli_env)

    codes = ok("code", "create", "5", "--count", "3", env=cli_env).split()
    assert len(codes) == 3 and len(set(codes)) == 3
    fails("code", "create", "-5", env=cli_env)
    ok("user", "create", "c@example.com", "--password", "password123", env=cli_env)
    assert "5.000000" in ok("code", "redeem", "c@example.com", codes[0], env=cli_env)
    assert "already been redeemed" in fails("code", "redeem", "c@example.com", codes[0], env=cli_env)
    assert "invalid" in fails("code", "redeem", "c@example.com", "A2A-NOT-A-CODE", env=cli_env)
    assert json.loads(ok("user", "show", "c@example.com", "--json", env=cli_env))["balance_micro_usd"] == 5_000_000
    assert "no problems" in ok("db", "verify", env=cli_env)


def test_bad_configuration_exits_2(tmp_path: Path) -> None:
    env = {"A2AGENT_DATA_DIR": str(tmp_path), "A2AGENT_DATABASE_URL": "mysql://localhost/x"}
    result = run_cli("user", "list", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "A2AGENT_DATABASE_URL" in result.stderr
    bad_toml = tmp_path / "a2.toml"
    bad_toml.write_text("port = 'eighty'\n")
    result = run_cli("--config", str(bad_toml), "user", "list", env={"A2AGENT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2 and "A2AGENT_PORT" in result.stderr


def test_cli_changes_hold_on_the_running_servers_next_request(tmp_path: Path, upstream) -> None:
    settings = make_settings(tmp_path / "data")
    env = {"A2AGENT_DATA_DIR": str(tmp_path / "data")}
    with ThreadedGateway(settings) as gw:
        ok("user", "create", "live@example.com", "--password", "password123", "--balance", "1", env=env)
        ok("channel", "add", "up", "--protocol", "openai", "--base-url", upstream.openai_base, env=env)
        ok("model", "add", "m", "--channel", "up", "--input-price", "1", "--output-price", "1", env=env)
        key = ok("key", "create", "live@example.com", env=env).strip().splitlines()[-1]
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0)
        msgs = [{"role": "user", "content": "hi"}]
        assert client.chat.completions.create(model="m", messages=msgs).choices
        ok("user", "suspend", "live@example.com", env=env)
        with pytest.raises(openai.PermissionDeniedError) as exc:
            client.chat.completions.create(model="m", messages=msgs)
        assert exc.value.body["code"] == "account_suspended"
        ok("user", "unsuspend", "live@example.com", env=env)
        assert client.chat.completions.create(model="m", messages=msgs).choices
        ok("model", "remove", "m", env=env)
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="m", messages=msgs)
        key_id = json.loads(ok("key", "list", "live@example.com", "--json", env=env))[0]["id"]
        ok("key", "delete", str(key_id), env=env)
        with pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="m", messages=msgs)
        assert httpx.get(gw.url + "/healthz").status_code == 200


def test_channel_test_and_status(tmp_path: Path, upstream) -> None:
    from tests.support.script import Script

    env = {"A2AGENT_DATA_DIR": str(tmp_path / "data")}
    ok("channel", "add", "good", "--protocol", "openai", "--base-url", upstream.openai_base, env=env)
    ok("channel", "add", "anth", "--protocol", "anthropic", "--base-url", upstream.anthropic_base,
       "--api-key", "secret-x", env=env)
    ok("model", "add", "m", "--channel", "good", "--upstream-model", "up-m", "--input-price", "1",
       "--output-price", "1", env=env)
    out = ok("channel", "test", "good", env=env)
    assert "good: ok (HTTP 200" in out
    probe = upstream.requests[-1]
    assert probe.json["model"] == "up-m" and probe.json["max_tokens"] == 1
    assert "anth: ok" in ok("channel", "test", "anth", env=env)
    assert upstream.requests[-1].headers["x-api-key"] == "secret-x"
    upstream.enqueue(Script(status=401, error_message="bad upstream key"))
    result = run_cli("channel", "test", "good", env=env)
    assert result.returncode == 1 and "HTTP 401" in result.stdout and "bad upstream key" in result.stdout
    assert "no channel" in fails("channel", "test", "nope", env=env)
    rows = json.loads(ok("channel", "list", "--json", env=env))
    assert {r["name"]: r["circuit"] for r in rows} == {"good": "closed", "anth": "closed"}
    assert all("secret-x" not in json.dumps(r) for r in rows)
