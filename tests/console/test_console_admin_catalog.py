"""Admin catalogue pages (channels, models, prices), the channel probe, key lookup, codes and
pagination."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import httpx
import openai
from sqlalchemy import insert

from a2agent.routing.probe import probe_channel
from a2agent.store.models import DailyUsage, RequestRecord
from tests.support.gateway import free_port


def _chat(env: Any, key: str, model: str) -> Any:
    client = openai.OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])


def _channel_id(env: Any, name: str) -> int:
    return env.call(env.services.catalog.get_channel(name)).id


def test_channels_add_edit_disable_test_delete(env: Any, client_for: Any) -> None:
    env.account("root@example.com", admin=True)
    admin = client_for("root@example.com")
    bad = admin.post("/admin/channels", {"name": "x", "protocol": "openai", "base_url": "ftp://nope"})
    assert bad.status_code == 400 and "http(s) URL" in bad.text and "data-autoopen" in bad.text
    dup = admin.post("/admin/channels", {"name": "oai", "protocol": "openai", "base_url": env.upstream.openai_base})
    assert dup.status_code == 400 and "already exists" in dup.text
    r = admin.post("/admin/channels", {
        "name": "backup", "protocol": "openai", "base_url": env.upstream.openai_base,
        "api_key": "upstream-secret-123", "priority": "5", "weight": "2",
        "extra_headers": '{"X-Org": "acme"}', "supports_reasoning": "1"})
    assert r.status_code == 303
    ch = env.call(env.services.catalog.get_channel("backup"))
    assert (ch.priority, ch.weight, ch.supports_reasoning, ch.api_key) == (5, 2, True, "upstream-secret-123")
    page = admin.get(f"/admin/channels/{ch.id}")
    assert page.status_code == 200 and "upstream-secret-123" not in page.text  # never shown back
    assert "upstream-secret-123" not in admin.get("/admin/channels").text

    # edit: a blank key keeps the stored one; bad JSON headers are refused
    r = admin.post(f"/admin/channels/{ch.id}", {"base_url": env.upstream.openai_base, "priority": "1",
                                               "weight": "3", "extra_headers": "[1]"})
    assert r.status_code == 400 and "JSON object" in r.text
    r = admin.post(f"/admin/channels/{ch.id}", {"base_url": env.upstream.openai_base, "priority": "1",
                                               "weight": "3", "total_timeout": "60"})
    assert r.status_code == 303
    ch = env.call(env.services.catalog.get_channel("backup"))
    assert (ch.priority, ch.weight, ch.total_timeout, ch.api_key) == (1, 3, 60.0, "upstream-secret-123")
    assert ch.extra_headers is None

    # test connection (htmx fragment and plain form)
    r = admin.post(f"/admin/channels/{ch.id}/test", headers={"hx-request": "true", "x-csrf-token": admin.csrf},
                   csrf=False)
    assert r.status_code == 200 and "OK · 200" in r.text
    assert env.upstream.requests[-1].json["max_tokens"] == 1
    r = admin.post(f"/admin/channels/{ch.id}/test")
    assert r.status_code == 303

    # disable → enable → delete
    admin.post(f"/admin/channels/{ch.id}/toggle")
    assert not env.call(env.services.catalog.get_channel("backup")).enabled
    admin.post(f"/admin/channels/{ch.id}/toggle")
    assert env.call(env.services.catalog.get_channel("backup")).enabled
    assert admin.post(f"/admin/channels/{ch.id}/delete").status_code == 303
    assert all(c.name != "backup" for c in env.call(env.services.catalog.list_channels()))
    assert admin.get(f"/admin/channels/{ch.id}").status_code == 404
    assert admin.post(f"/admin/channels/{ch.id}/toggle").status_code == 404


def test_models_routes_and_prices_take_effect(env: Any, client_for: Any) -> None:
    env.account("root@example.com", admin=True)
    user = env.account("u@example.com")
    key = env.key(user.id)
    admin = client_for("root@example.com")
    r = admin.post("/admin/models", {"model_id": "has space", "channel": "oai"})
    assert r.status_code == 400 and "without spaces" in r.text
    r = admin.post("/admin/models", {"model_id": "m1", "channel": "nope"})
    assert r.status_code == 400 and "no channel" in r.text.lower()
    r = admin.post("/admin/models", {"model_id": "m1", "channel": "oai", "input": "abc"})
    assert r.status_code == 400 and "USD amount" in r.text
    r = admin.post("/admin/models", {"model_id": "fast-chat", "channel": "oai", "upstream_model": "gpt-4o-mini",
                                     "context_window": "128000", "max_output_tokens": "16384", "input": "0.15",
                                     "output": "0.6", "cache_read": "0.075", "cache_write": "0"})
    assert r.status_code == 303
    saved = next(m for m in env.call(env.services.catalog.list_models()) if m.model_id == "fast-chat")
    assert saved.max_output_tokens == 16384
    listing = client_for("u@example.com").get("/models").text
    assert "fast-chat" in listing and "$0.15" in listing and "$0.60" in listing and "128K" in listing
    _chat(env, key, "fast-chat")

    r = admin.post("/admin/models/prices", {"model_id": "fast-chat", "input": "1", "output": "2",
                                            "cache_read": "0", "cache_write": "0"})
    assert r.status_code == 303
    entry = next(m for m in env.call(env.services.catalog.list_models()) if m.model_id == "fast-chat")
    assert (entry.prices.input, entry.prices.output) == (1_000_000, 2_000_000)
    assert admin.post("/admin/models/prices", {"model_id": "ghost", "input": "1"}).status_code == 400

    admin.post("/admin/models/remove-route", {"model_id": "fast-chat", "channel": "oai"})
    assert "no route" in admin.get("/admin/models").text
    with_route_removed = client_for("u@example.com").get("/models").text
    assert "fast-chat" not in with_route_removed
    assert admin.post("/admin/models/delete", {"model_id": "fast-chat"}).status_code == 303
    assert admin.post("/admin/models/delete", {"model_id": "fast-chat"}).status_code == 404
    try:
        _chat(env, key, "fast-chat")
        raise AssertionError("deleted model still served")
    except openai.NotFoundError:
        pass


def test_probe_channel_reports_failures(env: Any) -> None:
    gw = env.gw.gateway
    ok = env.call(probe_channel(gw, "ant"))
    assert ok["ok"] is True and ok["status"] == 200 and isinstance(ok["latency_ms"], int)
    assert env.upstream.requests[-1].json == {"model": "claude-sonnet-4-5", "max_tokens": 1,
                                              "messages": [{"role": "user", "content": "ping"}]}
    env.upstream.enqueue(status=401, error_message="invalid x-api-key")
    denied = env.call(probe_channel(gw, "oai"))
    assert denied["ok"] is False and denied["status"] == 401 and "invalid x-api-key" in denied["message"]
    env.channel("dead", "openai", base_url=f"http://127.0.0.1:{free_port()}/v1")
    dead = env.call(probe_channel(gw, "dead"))
    assert dead["ok"] is False and dead["status"] is None and "connect" in dead["message"]
    assert env.call(probe_channel(gw, "missing"))["ok"] is False


def test_key_usage_lookup_is_public_and_never_echoes_the_key(env: Any, client_for: Any) -> None:
    user = env.account("u@example.com")
    key = env.key(user.id, "ci-runner")
    _chat(env, key, "gpt-test")
    env.settle_all()
    anon = client_for()
    anon.get("/key-usage")
    r = anon.post("/key-usage", {"key": key})
    assert r.status_code == 200 and "ci-runner" in r.text and key not in r.text
    assert re.search(r"Requests</div>\s*<div class=\"stat-value\">1<", r.text)
    api = httpx.get(env.url + "/v1/usage", headers={"authorization": f"Bearer {key}"}).json()
    assert api["requests"] == 1
    frag = anon.post("/key-usage", {"key": key}, headers={"hx-request": "true"})
    assert frag.status_code == 200 and frag.text.lstrip().startswith('<div id="key-usage-result">')
    bad = anon.post("/key-usage", {"key": key[:-1] + ("A" if key[-1] != "A" else "B")})
    assert bad.status_code == 404 and "not valid" in bad.text and key[:20] not in bad.text
    assert anon.post("/key-usage", {"key": ""}).status_code == 400
    # deleted keys are unknown
    kid = env.call(env.services.accounts.list_keys(user.id))[0].id
    env.call(env.services.accounts.delete_key(kid))
    assert anon.post("/key-usage", {"key": key}).status_code == 404


def _seed_requests(env: Any, account_id: int, key_id: int, n: int) -> None:
    now = dt.datetime.now(dt.UTC)
    rows = [dict(id=f"req_seed{i:06d}", account_id=account_id, key_id=key_id, model="gpt-test",
                 protocol="openai", status="ok", http_status=200, input_tokens=10, output_tokens=5,
                 cost_micro=20, created_at=(now - dt.timedelta(minutes=i)).replace(tzinfo=None),
                 settled_at=now.replace(tzinfo=None)) for i in range(n)]

    async def run() -> None:
        async with env.services.db.write_conn() as conn:
            await conn.execute(insert(RequestRecord), rows)
            await conn.execute(insert(DailyUsage).values(
                day=now.date(), account_id=account_id, key_id=key_id, model="gpt-test", requests=n,
                errors=0, input_tokens=10 * n, output_tokens=5 * n, cache_read_tokens=0,
                cache_write_tokens=0, cost_micro=20 * n))

    env.call(run())


def test_usage_and_ledger_pagination(env: Any, client_for: Any) -> None:
    user = env.account("p@example.com")
    env.key(user.id, "k")
    kid = env.call(env.services.accounts.list_keys(user.id))[0].id
    _seed_requests(env, user.id, kid, 120)
    c = client_for("p@example.com")
    first = c.get("/usage?period=7d").text
    assert "Page 1 of 3" in first and first.count("req_seed") == 0  # ids are not shown
    assert first.count(">OpenAI</span>") == 50
    assert 'href="/usage?period=7d&amp;page=2"' in first
    third = c.get("/usage?period=7d&page=3").text
    assert third.count(">OpenAI</span>") == 20 and "Older →</span>" in third
    assert "120" in c.get("/usage?period=custom&start=2000-01-01&end=2100-01-01").text
    for i in range(30):
        env.call(env.services.ledger.adjust(user.id, 1000 + i, note=f"n{i}"))
    bill = c.get("/billing").text
    assert "Page 1</span>" in bill and 'href="/billing?page=2"' in bill  # ledger rows: 31
    assert "n29" in bill and "n0<" not in bill
    assert "n0<" in c.get("/billing?page=2").text
    assert c.get("/billing?page=abc").status_code == 200
