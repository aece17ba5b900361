"""The request log (SPEC §1): a user's own requests with refusals and failures, filters,
search by request id, a metadata-only detail view, CSV export and keyset paging; admins see
every account's. Also: one access-log line per API request, and gzip on console pages only."""

from __future__ import annotations

import csv
import gzip
import io
import logging
import re
from typing import Any

import httpx
import pytest

from tests.support import Script

MSGS = [{"role": "user", "content": "Say hello"}]
UA = "log-test-client/1.0"


def _chat(env: Any, key: str, model: str = "gpt-test", **kw: Any) -> httpx.Response:
    return httpx.post(env.url + "/v1/chat/completions", json={"model": model, "messages": MSGS, **kw},
                      headers={"authorization": f"Bearer {key}", "user-agent": UA}, timeout=20)


def _ids(html: str) -> list[str]:
    return re.findall(r'href="/requests/(req_[0-9a-f]+)"', html)


def test_refusals_and_failures_are_in_the_log(env: Any, client_for: Any) -> None:
    user = env.account("log@example.com", balance_usd=5)
    key = env.key(user.id, "main")
    doomed = env.key(user.id, "doomed")
    assert _chat(env, key).status_code == 200
    ok_id = _chat(env, key).headers.get("x-request-id") or ""
    not_found = _chat(env, key, model="no-such-model")
    assert not_found.status_code == 404
    keys = env.call(env.services.accounts.list_keys(user.id))
    doomed_id = next(k.id for k in keys if k.name == "doomed")
    env.call(env.services.accounts.update_key(doomed_id, disabled=True))
    assert _chat(env, doomed).status_code == 403
    env.call(env.services.accounts.delete_key(doomed_id))
    assert _chat(env, doomed).status_code == 401
    env.upstream.enqueue(Script(status=400))  # the upstream refuses: a failure, not a refusal
    assert _chat(env, key).status_code == 400
    env.settle_all()

    c = client_for("log@example.com")
    page = c.get("/requests")
    assert page.status_code == 200
    text = page.text
    assert len(_ids(text)) == 6
    assert len(_ids(c.get("/requests?status=failed").text)) == 1
    assert "no-such-model" in text and "model_not_found" in text
    assert "key_disabled" in text and "invalid_api_key" in text
    # filters
    refused = c.get("/requests?status=refused").text
    assert len(_ids(refused)) == 3
    assert len(_ids(c.get("/requests?status=ok").text)) == 2
    assert len(_ids(c.get(f"/requests?key={doomed_id}").text)) == 2
    # key-level refusals answer before the body is read: no model for those
    assert len(_ids(c.get("/requests?model=gpt-test").text)) == 3
    assert len(_ids(c.get("/requests?protocol=anthropic").text)) == 0
    assert c.get("/requests?key=999999").status_code == 404  # not this user's key
    # search by id → detail with metadata, never payloads
    rid = _ids(refused)[0]
    found = c.get(f"/requests?q={rid}")
    assert found.status_code == 303 and found.headers["location"] == f"/requests/{rid}"
    detail = c.get(f"/requests/{rid}").text
    assert rid in detail and "127.0.0.1" in detail and UA in detail
    assert "Say hello" not in detail and key not in detail
    if ok_id:
        ok_detail = c.get(f"/requests/{ok_id}").text
        assert "oai" in ok_detail and "Attempts" in ok_detail and UA in ok_detail
    assert "No request with id" in c.get("/requests?q=req_nope").text
    # CSV: the same rows
    exported = c.get("/requests.csv?status=refused")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert sorted(r["http_status"] for r in rows) == ["401", "403", "404"]
    assert {r["cost_usd"] for r in rows} == {"0.000000"}

    # another user sees none of it; an admin sees it all
    env.account("other@example.com")
    other = client_for("other@example.com")
    assert _ids(other.get("/requests").text) == []
    assert other.get(f"/requests/{rid}").status_code == 404
    assert other.get("/admin/requests").status_code == 403
    env.account("boss@example.com", admin=True)
    admin = client_for("boss@example.com")
    everything = admin.get("/admin/requests").text
    assert len(_ids(everything)) == 6 and "log@example.com" in everything
    assert admin.get(f"/requests/{rid}").status_code == 200
    assert len(_ids(admin.get(f"/admin/requests?account={user.id}&status=failed").text)) == 1


def test_keyset_paging_walks_every_record_once(env: Any, client_for: Any) -> None:
    user = env.account("pages@example.com", balance_usd=5)
    key = env.key(user.id)
    for i in range(120):
        assert _chat(env, key, model="gpt-test" if i % 3 else "missing").status_code in (200, 404)
    env.settle_all()
    c = client_for("pages@example.com")
    seen: list[str] = []
    url = "/requests"
    pages = 0
    while url:
        html = c.get(url).text
        seen += _ids(html)
        pages += 1
        m = re.search(r'href="(/requests\?[^"]*before=[^"]*)" rel="next"', html)
        url = m.group(1).replace("&amp;", "&") if m else ""
    assert pages == 3 and len(seen) == 120 and len(set(seen)) == 120
    rows = list(csv.DictReader(io.StringIO(c.get("/requests.csv").text)))
    assert [r["request_id"] for r in rows] == seen


def test_access_log_line_per_api_request(env: Any, caplog: pytest.LogCaptureFixture) -> None:
    user = env.account("acc@example.com")
    key = env.key(user.id)
    caplog.set_level(logging.INFO, logger="a2agent.access")
    ok = _chat(env, key)
    _chat(env, key, model="nope")
    httpx.post(env.url + "/v1/chat/completions", json={}, headers={"authorization": "Bearer sk-a2a-x"})
    env.settle_all()
    lines = [r for r in caplog.records if r.name == "a2agent.access"]
    by_status = {r.status: r for r in lines}  # type: ignore[attr-defined]
    assert set(by_status) == {200, 404, 401}
    good = by_status[200]
    assert good.request_id == ok.headers["x-request-id"]  # type: ignore[attr-defined]
    assert (good.model, good.channel, good.key_id) == ("gpt-test", "oai", by_status[404].key_id)  # type: ignore[attr-defined]
    assert good.latency_ms >= 0  # type: ignore[attr-defined]
    assert by_status[401].key_id is None  # type: ignore[attr-defined]
    for r in lines:
        assert key not in r.getMessage() and key not in str(vars(r))


def test_console_pages_are_gzipped_but_not_the_api(env: Any, client_for: Any) -> None:
    user = env.account("gz@example.com")
    key = env.key(user.id)
    c = client_for("gz@example.com")
    for path in ("/keys", "/requests", "/docs", "/static/console.css"):
        r = c.http.get(path, headers={"accept-encoding": "gzip"})
        assert r.headers.get("content-encoding") == "gzip", path
        assert len(gzip.compress(r.content)) > 0
    headers = {"authorization": f"Bearer {key}", "accept-encoding": "gzip"}
    r = httpx.get(env.url + "/v1/models", headers=headers)
    assert r.status_code == 200 and "content-encoding" not in r.headers
    with httpx.stream("POST", env.url + "/v1/chat/completions", headers=headers,
                      json={"model": "gpt-test", "messages": MSGS, "stream": True}) as s:
        assert "content-encoding" not in s.headers
        s.read()
    env.settle_all()
