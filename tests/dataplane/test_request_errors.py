"""Invalid requests: 400 / 404 / 413 in the caller's protocol, refused before any upstream call."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.conftest import Env, _env
from tests.dataplane.conftest import MSGS, Tenant, assert_error


def _post(env: Any, path: str, key: str, *, json: Any = None, content: Any = None,
          headers: dict[str, str] | None = None) -> httpx.Response:
    h = {"authorization": f"Bearer {key}", **(headers or {})}
    if content is not None:
        h.setdefault("content-type", "application/json")
    return httpx.post(env.url + path, json=json, content=content, headers=h, timeout=20)


OA = ("/v1/chat/completions", "openai")
AN = ("/v1/messages", "anthropic")

BAD_BODIES = [
    ("malformed json", b'{"model": "gpt-test", "messages": [', None),
    ("empty body", b"", None),
    ("json array", b"[1, 2]", None),
    ("json string", b'"hello"', None),
    ("model missing", {"messages": MSGS, "max_tokens": 5}, "model"),
    ("model not a string", {"model": 5, "messages": MSGS, "max_tokens": 5}, "model"),
    ("messages missing", {"model": "M", "max_tokens": 5}, "messages"),
    ("messages not a list", {"model": "M", "messages": "hi", "max_tokens": 5}, "messages"),
    ("message without role", {"model": "M", "messages": [{"content": "hi"}], "max_tokens": 5}, None),
    ("stream not a boolean", {"model": "M", "messages": MSGS, "max_tokens": 5, "stream": "yes"}, "stream"),
]


@pytest.mark.parametrize("path,protocol", [OA, AN], ids=["openai", "anthropic"])
@pytest.mark.parametrize("what,body,param", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_invalid_body_is_400(denv, tenant, path, protocol, what, body, param):
    model = "gpt-test" if protocol == "openai" else "claude-test"
    if isinstance(body, dict):
        body = {k: (model if v == "M" else v) for k, v in body.items()}
        r = _post(denv, path, tenant.key, json=body)
    else:
        r = _post(denv, path, tenant.key, content=body)
    err = assert_error(r, 400, protocol, err_type="invalid_request_error")
    if protocol == "openai" and param is not None:
        assert err["param"] == param, err
    if param is not None:
        assert param in err["message"], err
    assert denv.upstream.requests == [] and tenant.records() == []


def test_anthropic_max_tokens_required(denv, tenant):
    for body in ({"model": "claude-test", "messages": MSGS},
                 {"model": "claude-test", "messages": MSGS, "max_tokens": "10"},
                 {"model": "claude-test", "messages": MSGS, "max_tokens": 0}):
        r = _post(denv, "/v1/messages", tenant.key, json=body)
        err = assert_error(r, 400, "anthropic", err_type="invalid_request_error")
        assert "max_tokens" in err["message"]
    with pytest.raises(anthropic.BadRequestError):
        tenant.an.messages.create(model="claude-test", max_tokens=0, messages=MSGS)
    # OpenAI callers may omit it
    assert _post(denv, "/v1/chat/completions", tenant.key, json={"model": "gpt-test", "messages": MSGS}).status_code == 200
    assert len(denv.upstream.requests) == 1


def test_unknown_model_is_404_with_a_hint(denv, tenant):
    r = _post(denv, "/v1/chat/completions", tenant.key, json={"model": "no-such-model", "messages": MSGS})
    err = assert_error(r, 404, "openai", code="model_not_found")
    assert "no-such-model" in err["message"] and "GET /v1/models" in err["message"]
    r = _post(denv, "/v1/messages", tenant.key, json={"model": "no-such-model", "messages": MSGS, "max_tokens": 5})
    err = assert_error(r, 404, "anthropic", err_type="not_found_error")
    assert "GET /v1/models" in err["message"]
    r = _post(denv, "/v1/messages/count_tokens", tenant.key, json={"model": "no-such-model", "messages": MSGS})
    err = assert_error(r, 404, "anthropic", err_type="not_found_error")
    assert "GET /v1/models" in err["message"]
    with pytest.raises(openai.NotFoundError):
        tenant.oa.chat.completions.create(model="no-such-model", messages=MSGS, stream=True)
    with pytest.raises(anthropic.NotFoundError):
        tenant.an.messages.create(model="no-such-model", max_tokens=5, messages=MSGS)
    # the upstream's name for a model is not a public id
    r = _post(denv, "/v1/chat/completions", tenant.key, json={"model": "gpt-4o-mini", "messages": MSGS})
    assert r.status_code == 404
    assert denv.upstream.requests == []
    # in the key's request log: refused, uncharged, with the model asked for (not count_tokens)
    records = tenant.records()
    assert len(records) == 5
    assert {(r.status, r.http_status, r.error_type, r.cost_micro) for r in records} == {
        ("refused", 404, "model_not_found", 0)}
    assert {r.model for r in records} == {"no-such-model", "gpt-4o-mini"}


def test_unknown_v1_endpoint_answers_in_protocol(denv, tenant):
    r = httpx.post(denv.url + "/v1/nope", json={}, headers={"authorization": f"Bearer {tenant.key}"})
    assert_error(r, 404, "openai")
    r = httpx.get(denv.url + "/v1/chat/completions", headers={"authorization": f"Bearer {tenant.key}"})
    assert r.status_code == 405 and "error" in r.json()


# ---- body size limit --------------------------------------------------------------------------

LIMIT = 4096


@pytest.fixture
def small_env(tmp_path: Path, upstream: Any) -> Iterator[Env]:
    yield from _env(tmp_path, upstream, None, max_body_bytes=LIMIT)


def _sized_body(protocol: str, size: int) -> bytes:
    body: dict[str, Any] = {"model": "gpt-test" if protocol == "openai" else "claude-test", "max_tokens": 5,
                            "messages": [{"role": "user", "content": ""}]}
    pad = size - len(orjson.dumps(body))
    body["messages"][0]["content"] = "x" * pad
    raw = orjson.dumps(body)
    assert len(raw) == size
    return raw


@pytest.mark.parametrize("path,protocol", [OA, AN, ("/v1/messages/count_tokens", "anthropic")],
                         ids=["openai", "anthropic", "count_tokens"])
def test_body_over_the_limit_is_413(small_env, path, protocol):
    t = Tenant(small_env)
    ok = _post(small_env, path, t.key, content=_sized_body(protocol, LIMIT))
    assert ok.status_code == 200, ok.text
    n_up = len(small_env.upstream.requests)

    too_big = _sized_body(protocol, LIMIT + 1)
    r = _post(small_env, path, t.key, content=too_big)  # declared Content-Length
    err = assert_error(r, 413, protocol, err_type="request_too_large" if protocol == "anthropic" else None)
    assert str(LIMIT) in err["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for i in range(0, len(too_big), 1000):
            yield too_big[i:i + 1000]

    r = _post(small_env, path, t.key, content=chunks())
    assert_error(r, 413, protocol)
    big = _sized_body(protocol, 20 * LIMIT)
    r = _post(small_env, path, t.key, content=big)
    assert_error(r, 413, protocol)
    assert len(small_env.upstream.requests) == n_up
    served = [r for r in t.records() if r.status != "refused"]
    assert len(served) == (1 if path != "/v1/messages/count_tokens" else 0)
    refused = [r for r in t.records() if r.status == "refused"]
    assert [r.http_status for r in refused] == ([413] * 3 if path != "/v1/messages/count_tokens" else [])
    t.close()


def test_sdk_sees_413(small_env):
    t = Tenant(small_env)
    huge = [{"role": "user", "content": "y" * (2 * LIMIT)}]
    with pytest.raises(openai.APIStatusError) as ei:
        t.oa.chat.completions.create(model="gpt-test", messages=huge)
    assert ei.value.status_code == 413
    with pytest.raises(anthropic.APIStatusError) as ea:
        t.an.messages.create(model="claude-test", max_tokens=5, messages=huge)
    assert ea.value.status_code == 413 and ea.value.body["error"]["type"] == "request_too_large"
    assert small_env.upstream.requests == []
    t.close()
