"""Authentication and account admission on every /v1 endpoint (SPEC §3).

401 for a missing / malformed / unknown / deleted key; 403 for a suspended account
(``account_suspended``) or a balance at or below zero (``insufficient_balance``); each in the
caller's protocol. Nothing of a refused request may reach an upstream, and it leaves no record.
"""

from __future__ import annotations

import secrets
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.dataplane.conftest import MSGS, Tenant, an_client, assert_error, oa_client
from tests.support import Script, Usage

OA_BODY = {"model": "gpt-test", "messages": MSGS}
AN_BODY = {"model": "claude-test", "max_tokens": 16, "messages": MSGS}

# (method, path, body, protocol of the error envelope)
ENDPOINTS = [
    ("POST", "/v1/chat/completions", OA_BODY, "openai"),
    ("GET", "/v1/models", None, "openai"),
    ("GET", "/v1/usage", None, "openai"),
    ("POST", "/v1/messages", AN_BODY, "anthropic"),
    ("POST", "/v1/messages?beta=true", {**AN_BODY, "stream": True}, "anthropic"),
    ("POST", "/v1/messages/count_tokens", {"model": "claude-test", "messages": MSGS}, "anthropic"),
]


def _send(env: Any, method: str, path: str, body: Any, headers: dict[str, str]) -> httpx.Response:
    return httpx.request(method, env.url + path, json=body, headers=headers, timeout=20)


def _refusals(env: Any, key: str, deleted_key: str) -> list[tuple[str, dict[str, str]]]:
    return [
        ("missing", {}),
        ("empty x-api-key", {"x-api-key": ""}),
        ("basic", {"authorization": "Basic " + "dXNlcjpwYXNz"}),
        ("bearer without token", {"authorization": "Bearer"}),
        ("raw token, no scheme", {"authorization": key}),
        ("unknown well-formed key", {"authorization": "Bearer sk-a2a-" + secrets.token_hex(20)}),
        ("unknown x-api-key", {"x-api-key": "sk-a2a-" + secrets.token_hex(20)}),
        ("garbage", {"x-api-key": "not-a-key"}),
        ("key with one character changed", {"x-api-key": key[:-1] + ("A" if key[-1] != "A" else "B")}),
        ("deleted key (bearer)", {"authorization": f"Bearer {deleted_key}"}),
        ("deleted key (x-api-key)", {"x-api-key": deleted_key}),
    ]


def _key_id(env: Any, account_id: int, value: str) -> int:
    keys = env.call(env.services.accounts.list_keys(account_id))
    (match,) = [k for k in keys if value.endswith(k.last4) and value.startswith(k.prefix)]
    return match.id


@pytest.mark.parametrize("method,path,body,protocol", ENDPOINTS, ids=[e[1] for e in ENDPOINTS])
def test_bad_credentials_are_401_in_the_callers_protocol(denv, tenant, method, path, body, protocol):
    doomed = denv.key(tenant.id, "doomed")
    denv.call(denv.services.accounts.delete_key(_key_id(denv, tenant.id, doomed)))
    for what, headers in _refusals(denv, tenant.key, doomed):
        r = _send(denv, method, path, body, headers)
        assert_error(r, 401, protocol,
                     err_type="authentication_error" if protocol == "anthropic" else None)
        assert tenant.key not in r.text and doomed not in r.text, what
    assert denv.upstream.requests == []
    assert tenant.records() == []


def test_both_header_styles_work_on_both_protocols(denv, tenant):
    for headers in ({"authorization": f"Bearer {tenant.key}"}, {"x-api-key": tenant.key},
                    {"authorization": f"bearer  {tenant.key}"}):
        assert _send(denv, "POST", "/v1/chat/completions", OA_BODY, headers).status_code == 200
        assert _send(denv, "POST", "/v1/messages", AN_BODY, headers).status_code == 200
        assert _send(denv, "GET", "/v1/models", None, headers).status_code == 200
    assert len(denv.upstream.requests) == 6
    for rec in denv.upstream.requests:  # whichever header carried it, the caller's key stays here
        assert tenant.key not in str(rec.headers) and tenant.key.encode() not in rec.body
        assert rec.headers.get("authorization") == "Bearer upstream-oai" or rec.headers.get("x-api-key") == "upstream-ant"


def test_sdks_raise_authentication_error(denv):
    bogus = "sk-a2a-" + secrets.token_hex(20)
    with oa_client(denv, bogus) as oa, pytest.raises(openai.AuthenticationError) as ei:
        oa.chat.completions.create(model="gpt-test", messages=MSGS)
    assert ei.value.status_code == 401 and ei.value.code == "invalid_api_key"
    for bearer in (False, True):
        with an_client(denv, bogus, bearer=bearer) as an, pytest.raises(anthropic.AuthenticationError) as ea:
            an.messages.create(model="claude-test", max_tokens=5, messages=MSGS)
        assert ea.value.body["error"]["type"] == "authentication_error"
    assert denv.upstream.requests == []


def test_key_deleted_between_two_requests(denv, tenant):
    assert tenant.oa.chat.completions.create(model="gpt-test", messages=MSGS).choices
    denv.call(denv.services.accounts.delete_key(_key_id(denv, tenant.id, tenant.key)))
    with pytest.raises(openai.AuthenticationError):
        tenant.oa.chat.completions.create(model="gpt-test", messages=MSGS)
    with pytest.raises(anthropic.AuthenticationError):
        tenant.an.messages.create(model="claude-test", max_tokens=5, messages=MSGS)
    assert len(denv.upstream.requests) == 1
    assert len(tenant.records()) == 1


def test_account_suspended_between_two_requests(denv, tenant):
    tenant.oa.chat.completions.create(model="gpt-test", messages=MSGS)
    denv.call(denv.services.accounts.set_suspended(tenant.id, True))
    for method, path, body, protocol in ENDPOINTS[:1] + ENDPOINTS[3:]:
        r = _send(denv, method, path, body, {"authorization": f"Bearer {tenant.key}"})
        if protocol == "openai":
            assert_error(r, 403, protocol, code="account_suspended")
        else:
            assert_error(r, 403, protocol, err_type="permission_error")
        assert "suspended" in r.text
    with pytest.raises(openai.PermissionDeniedError) as ei:
        tenant.oa.chat.completions.create(model="gpt-test", messages=MSGS, stream=True)
    assert ei.value.code == "account_suspended"
    with pytest.raises(anthropic.PermissionDeniedError):
        tenant.an.messages.create(model="claude-test", max_tokens=5, messages=MSGS)
    assert len(denv.upstream.requests) == 1
    # and back: unsuspending takes effect on the next request too
    denv.call(denv.services.accounts.set_suspended(tenant.id, False))
    assert tenant.an.messages.create(model="claude-test", max_tokens=5, messages=MSGS).content
    assert len(tenant.records()) == 2


@pytest.mark.parametrize("balance_micro", [0, -1])
def test_balance_at_or_below_zero_is_403_insufficient_balance(denv, balance_micro):
    t = Tenant(denv, balance_usd=0)
    if balance_micro:
        denv.call(denv.services.ledger.adjust(t.id, balance_micro, note="overdrawn"))
    assert t.balance() == balance_micro
    r = _send(denv, "POST", "/v1/chat/completions", OA_BODY, {"authorization": f"Bearer {t.key}"})
    assert_error(r, 403, "openai", code="insufficient_balance")
    r = _send(denv, "POST", "/v1/messages", AN_BODY, {"x-api-key": t.key})
    err = assert_error(r, 403, "anthropic", err_type="permission_error")
    assert "balance" in err["message"].lower()
    with pytest.raises(openai.PermissionDeniedError) as ei:
        t.oa.chat.completions.create(model="gpt-test", messages=MSGS)
    assert ei.value.code == "insufficient_balance"
    # count_tokens calls the upstream with the operator's credential: refused as well
    r = _send(denv, "POST", "/v1/messages/count_tokens", {"model": "claude-test", "messages": MSGS},
              {"x-api-key": t.key})
    assert_error(r, 403, "anthropic", err_type="permission_error")
    # reading one's own usage and the model list stays allowed with no balance
    assert _send(denv, "GET", "/v1/usage", None, {"x-api-key": t.key}).status_code == 200
    assert _send(denv, "GET", "/v1/models", None, {"x-api-key": t.key}).status_code == 200
    assert denv.upstream.requests == []
    assert t.records() == []
    t.close()


def test_balance_spent_to_zero_then_refused(denv):
    """A request admitted on its hold spends the balance to zero; the next one is refused."""
    t = Tenant(denv, balance_usd=0)
    denv.call(denv.services.ledger.adjust(t.id, 305, note="305 micro-USD"))
    # held: ~4 input tokens + 100 output tokens x 2 = ~204; the upstream counts more input
    denv.upstream.enqueue(Script(usage=Usage(input_tokens=103, output_tokens=101)))  # costs 305 micro-USD
    t.oa.chat.completions.create(model="gpt-test", messages=MSGS, max_tokens=100)
    denv.settle_all()
    assert t.balance() == 0
    with pytest.raises(openai.PermissionDeniedError) as ei:
        t.oa.chat.completions.create(model="gpt-test", messages=MSGS, max_tokens=1)
    assert ei.value.code == "insufficient_balance"
    # count_tokens calls the upstream with the operator's credential: refused as well
    r = _send(denv, "POST", "/v1/messages/count_tokens", {"model": "claude-test", "messages": MSGS},
              {"x-api-key": t.key})
    assert_error(r, 403, "anthropic", err_type="permission_error")
    assert len(denv.upstream.requests) == 1
    t.close()
