"""Tenant safety (issue 13): a caller's body never counts against a shared channel, never holds
a slot after its answer, and never reaches a 500; the body shape limit is documented and
enforced at parse time."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from a2agent.translate.walk import MAX_JSON_DEPTH
from tests.dataplane.conftest import MSGS, Tenant, assert_error
from tests.support import Script

ROUTES = [  # (caller protocol, path, model): passthrough and both translation lanes
    ("openai", "/v1/chat/completions", "gpt-test"),
    ("openai", "/v1/chat/completions", "claude-test"),
    ("anthropic", "/v1/messages", "claude-test"),
    ("anthropic", "/v1/messages", "gpt-test"),
]


DEEP = "__deep__"


def nested(levels: int) -> bytes:
    """JSON text of a value ``levels`` deep (arrays and objects alternate), written out as text
    (JSON encoders stop long before the depths tried here)."""
    opens = "".join('{"a":' if i % 2 else "[" for i in range(levels))
    closes = "".join("}" if i % 2 else "]" for i in reversed(range(levels)))
    return (opens + '"x"' + closes).encode()


def body_for(protocol: str, model: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": MSGS, **extra}
    if protocol == "anthropic":
        body.setdefault("max_tokens", 32)
    return body


def post(env: Any, t: Tenant, path: str, body: Any, deep: int = 0) -> httpx.Response:
    """POST ``body``; the string ``DEEP`` in it is replaced by a value ``deep`` levels deep."""
    raw = orjson.dumps(body)
    if deep:
        raw = raw.replace(orjson.dumps(DEEP), nested(deep))
    return httpx.post(env.url + path, content=raw, timeout=30,
                      headers={"authorization": f"Bearer {t.key}", "content-type": "application/json"})


def held(env: Any, t: Tenant) -> dict[str, int]:
    """Everything a tenant's requests can hold: concurrency slots, channel slots, balance holds."""
    gw = env.gw.gateway
    env.settle_all()
    channels = {name: gw.health.state(ch).in_flight
                for name, ch in gw.services.catalog._snapshot.channels.items()}
    return {"concurrency": gw.admission.concurrency.current(t.id), **channels,
            "reserved": env.call(env.services.accounts.get(t.id)).reserved_micro}


def breakers(env: Any) -> dict[str, tuple[str, int]]:
    gw = env.gw.gateway
    return {name: (gw.health.state(ch).state, gw.health.state(ch).consecutive_failures)
            for name, ch in gw.services.catalog._snapshot.channels.items()}


@pytest.mark.parametrize("protocol,path,model", ROUTES)
def test_depth_limit_is_documented_and_enforced_at_parse(denv, tenant, protocol, path, model):
    # the body object is level 1: MAX_JSON_DEPTH levels in all are accepted, one more is not
    ok = post(denv, tenant, path, body_for(protocol, model, metadata={"deep": DEEP}), MAX_JSON_DEPTH - 2)
    assert ok.status_code == 200, ok.text
    for levels in (MAX_JSON_DEPTH, 300, 1000, 5000):
        r = post(denv, tenant, path, body_for(protocol, model, extra=DEEP), levels)
        err = assert_error(r, 400, protocol, err_type="invalid_request_error")
        assert f"{MAX_JSON_DEPTH} levels" in err["message"]
    assert len(denv.upstream.requests) == 1  # only the accepted one went upstream
    assert held(denv, tenant) == {"concurrency": 0, "oai": 0, "ant": 0, "reserved": 0}
    assert breakers(denv) == {"oai": ("closed", 0), "ant": ("closed", 0)}


def test_five_malicious_requests_leave_the_breaker_closed_for_other_tenants(denv):
    attacker, victim = Tenant(denv), Tenant(denv)
    try:
        # 300 levels: parsed fine by a JSON library, but past what re-encoding the upstream body
        # can take (the old relay counted that failure against the channel)
        for protocol, path, model in ROUTES * 2:
            r = post(denv, attacker, path, body_for(protocol, model, extra=DEEP), 300)
            assert_error(r, 400, protocol)
        assert breakers(denv) == {"oai": ("closed", 0), "ant": ("closed", 0)}
        for protocol, path, model in ROUTES:
            r = post(denv, victim, path, body_for(protocol, model))
            assert r.status_code == 200, r.text
        assert attacker.records() == []  # refused before admission: nothing recorded, nothing held
        assert held(denv, attacker)["concurrency"] == 0
    finally:
        attacker.close()
        victim.close()


def test_deep_bodies_do_not_leak_concurrency_slots(denv):
    t = Tenant(denv)
    try:
        denv.call(denv.services.accounts.set_limits(t.id, concurrency=3))
        deep_content = [{"type": "text", "text": "hi", "extra": DEEP}]
        for _ in range(3):
            r = post(denv, t, "/v1/chat/completions",
                     {"model": "gpt-test", "messages": [{"role": "user", "content": deep_content}]}, 990)
            assert_error(r, 400, "openai")
        r = post(denv, t, "/v1/chat/completions", body_for("openai", "gpt-test"))
        assert r.status_code == 200, r.text
        assert held(denv, t) == {"concurrency": 0, "oai": 0, "ant": 0, "reserved": 0}
    finally:
        t.close()


ODD_FIELDS = [  # fields of a wrong type that used to raise inside a translation (500)
    ("openai", "/v1/chat/completions", "claude-test", {"reasoning_effort": {}}),
    ("openai", "/v1/chat/completions", "claude-test", {"reasoning_effort": ["high"]}),
    ("anthropic", "/v1/messages", "gpt-test", {"tools": True}),
    ("anthropic", "/v1/messages", "gpt-test", {"tools": [1, 2]}),
    ("openai", "/v1/chat/completions", "claude-test", {"stop": [{"a": 1}]}),
    ("anthropic", "/v1/messages", "gpt-test", {"system": 5}),
    ("openai", "/v1/chat/completions", "claude-test", {"max_tokens": "many"}),
]


@pytest.mark.parametrize("protocol,path,model,extra", ODD_FIELDS,
                         ids=[f"{m}-{next(iter(e))}-{i}" for i, (_, _, m, e) in enumerate(ODD_FIELDS)])
def test_ill_typed_fields_are_400_in_the_callers_protocol(denv, tenant, protocol, path, model, extra):
    r = post(denv, tenant, path, body_for(protocol, model, **extra))
    err = assert_error(r, 400, protocol, err_type="invalid_request_error")
    assert next(iter(extra)) in err["message"]
    assert denv.upstream.requests == []
    assert held(denv, tenant) == {"concurrency": 0, "oai": 0, "ant": 0, "reserved": 0}
    assert breakers(denv) == {"oai": ("closed", 0), "ant": ("closed", 0)}


def test_ill_typed_message_content_is_400(denv, tenant):
    for content in (5, {"text": "hi"}, [1], ["text"]):
        r = post(denv, tenant, "/v1/messages",
                 {"model": "gpt-test", "max_tokens": 8, "messages": [{"role": "user", "content": content}]})
        assert_error(r, 400, "anthropic", err_type="invalid_request_error")
    assert denv.upstream.requests == []


COUNT = "/v1/messages/count_tokens"


def test_count_tokens_is_admitted_like_a_request(denv):
    t = Tenant(denv)
    try:
        denv.call(denv.services.accounts.set_limits(t.id, rpm=3))
        body = {"model": "claude-test", "messages": MSGS}
        for _ in range(3):
            r = httpx.post(denv.url + COUNT, json=body, headers={"x-api-key": t.key}, timeout=30)
            assert r.status_code == 200, r.text
        r = httpx.post(denv.url + COUNT, json=body, headers={"x-api-key": t.key}, timeout=30)
        assert_error(r, 429, "anthropic", err_type="rate_limit_error")
        assert "retry-after" in r.headers
        assert len(denv.upstream.requests) == 3  # the refused one cost the operator nothing
        # and the rate limit is shared with generation requests
        r = post(denv, t, "/v1/messages", body_for("anthropic", "claude-test"))
        assert_error(r, 429, "anthropic", err_type="rate_limit_error")
        assert t.records() == []  # never charged, never recorded
        assert held(denv, t) == {"concurrency": 0, "oai": 0, "ant": 0, "reserved": 0}
    finally:
        t.close()


@pytest.mark.parametrize("status,ours,code", [(401, 502, "api_error"), (403, 502, "api_error"),
                                              (500, 502, "api_error"), (529, 502, "api_error"),
                                              (429, 429, "rate_limit_error"),
                                              (400, 400, "invalid_request_error")])
def test_count_tokens_upstream_failures_come_back_in_our_envelope(denv, tenant, status, ours, code):
    secret = "sk-ant-upstream-SECRET-key-fragment at internal-host.example"
    denv.upstream.enqueue(Script(endpoint="count_tokens", status=status, error_message=secret))
    r = httpx.post(denv.url + COUNT, json={"model": "claude-test", "messages": MSGS},
                   headers={"x-api-key": tenant.key}, timeout=30)
    err = assert_error(r, ours, "anthropic", err_type=code)
    if status != 400:  # only the caller's own mistake is worth quoting back
        assert "SECRET" not in err["message"] and "internal-host" not in err["message"]
