"""Per-key controls (SPEC §2): disable / enable (403 key_disabled), a spend cap (total or
monthly; 403 key_limit_reached), a model allow-list (404 for other models, /v1/models lists
only those), an expiry (401 key_expired), rename; each in the caller's protocol, on the next
request, with nothing sent upstream when refused. Keys without a label get a readable name."""

from __future__ import annotations

import datetime as dt
import re

import httpx

from tests.dataplane.conftest import MSGS, Tenant, assert_error
from tests.support import Script, Usage

OA_BODY = {"model": "gpt-test", "messages": MSGS}
AN_BODY = {"model": "claude-test", "max_tokens": 16, "messages": MSGS}


def _post(env, path, body, key):
    return httpx.post(env.url + path, json=body, headers={"authorization": f"Bearer {key}"},
                      timeout=20)


def _key(t: Tenant):
    return t.env.call(t.env.services.accounts.list_keys(t.id))[0]  # the tenant's first key


def _update(t: Tenant, **changes):
    return t.env.call(t.env.services.accounts.update_key(_key(t).id, **changes))


def test_disabled_key_is_403_key_disabled_until_enabled(denv):
    t = Tenant(denv)
    _update(t, disabled=True)
    err = assert_error(_post(denv, "/v1/chat/completions", OA_BODY, t.key), 403, "openai",
                       code="key_disabled")
    assert "disabled" in err["message"] and "Enable" in err["message"]
    assert_error(_post(denv, "/v1/messages", AN_BODY, t.key), 403, "anthropic",
                 err_type="permission_error")
    r = httpx.get(denv.url + "/v1/models", headers={"authorization": f"Bearer {t.key}"})
    assert_error(r, 403, "openai", code="key_disabled")
    # its owner may still look at its usage
    assert httpx.get(denv.url + "/v1/usage", headers={"x-api-key": t.key}).status_code == 200
    assert denv.upstream.requests == []
    _update(t, disabled=False)
    assert _post(denv, "/v1/chat/completions", OA_BODY, t.key).status_code == 200
    t.close()


def test_spend_cap_total_and_monthly(denv):
    t = Tenant(denv)
    denv.upstream.enqueue(Script(usage=Usage(input_tokens=100, output_tokens=100)))  # 300 micro
    _update(t, spend_cap_micro=300)
    assert _post(denv, "/v1/chat/completions", OA_BODY, t.key).status_code == 200
    denv.settle_all()
    err = assert_error(_post(denv, "/v1/chat/completions", OA_BODY, t.key), 403, "openai",
                       code="key_limit_reached")
    assert "$0.000300" in err["message"] and "in total" in err["message"]
    assert_error(_post(denv, "/v1/messages", AN_BODY, t.key), 403, "anthropic",
                 err_type="permission_error")
    # monthly: this month's spend counts the same request
    _update(t, spend_cap_micro=300, spend_cap_period="monthly")
    err = assert_error(_post(denv, "/v1/chat/completions", OA_BODY, t.key), 403, "openai",
                       code="key_limit_reached")
    assert "this month" in err["message"]
    _update(t, spend_cap_micro=301)  # raised: allowed again
    assert _post(denv, "/v1/chat/completions", OA_BODY, t.key).status_code == 200
    _update(t, spend_cap_micro=None)
    assert _key(t).spend_cap_period is None
    assert len(denv.upstream.requests) == 2
    t.close()


def test_model_allow_list(denv):
    t = Tenant(denv)
    _update(t, allowed_models=["claude-test"])
    err = assert_error(_post(denv, "/v1/chat/completions", OA_BODY, t.key), 404, "openai",
                       code="model_not_found")
    assert "gpt-test" in err["message"]
    assert _post(denv, "/v1/messages", AN_BODY, t.key).status_code == 200
    r = httpx.get(denv.url + "/v1/models", headers={"authorization": f"Bearer {t.key}"})
    assert [m["id"] for m in r.json()["data"]] == ["claude-test"]
    r = _post(denv, "/v1/messages/count_tokens", {"model": "gpt-test", "messages": MSGS}, t.key)
    assert_error(r, 404, "anthropic", err_type="not_found_error")
    _update(t, allowed_models=None)
    r = httpx.get(denv.url + "/v1/models", headers={"authorization": f"Bearer {t.key}"})
    assert {m["id"] for m in r.json()["data"]} >= {"gpt-test", "claude-test"}
    t.close()


def test_expiry(denv):
    t = Tenant(denv)
    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    _update(t, expires_at=future)
    assert _post(denv, "/v1/chat/completions", OA_BODY, t.key).status_code == 200
    _update(t, expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
    err = assert_error(_post(denv, "/v1/chat/completions", OA_BODY, t.key), 401, "openai",
                       code="key_expired")
    assert "expired" in err["message"]
    assert_error(_post(denv, "/v1/messages", AN_BODY, t.key), 401, "anthropic",
                 err_type="authentication_error")
    _update(t, expires_at=None)
    assert _post(denv, "/v1/chat/completions", OA_BODY, t.key).status_code == 200
    t.close()


def test_rename_validation_and_readable_names(denv):
    t = Tenant(denv)
    assert re.fullmatch(r"[a-z]+-[a-z]+(-\d+)?", _key(t).name), _key(t).name
    names = {denv.call(denv.services.accounts.create_key(t.id))[0].name for _ in range(5)}
    assert len(names) == 5  # unique within the account
    assert _update(t, name="  renamed ").name == "renamed"
    for bad in ({"name": " "}, {"spend_cap_micro": 0}, {"spend_cap_period": "weekly"},
                {"colour": "red"}):
        try:
            _update(t, **bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")
    t.close()
