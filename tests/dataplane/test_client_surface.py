"""The rest of the client surface real clients use (issue 14 §7): ``models.retrieve`` in both
SDKs, count_tokens when the Anthropic upstream has no count endpoint, both auth headers at
once, and sampling parameters Anthropic upstreams refuse together."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.dataplane.conftest import MSGS, Tenant, an_client, assert_error
from tests.support import Script


def test_models_retrieve_in_both_sdks(denv: Any) -> None:
    t = Tenant(denv)
    m = t.oa.models.retrieve("gpt-test")
    assert (m.id, m.object, m.owned_by) == ("gpt-test", "model", "a2agent")
    a = t.an.models.retrieve("claude-test")
    assert (a.id, a.type, a.display_name) == ("claude-test", "model", "claude-test")
    with pytest.raises(openai.NotFoundError) as oe:
        t.oa.models.retrieve("nope")
    assert oe.value.body["code"] == "model_not_found"
    with pytest.raises(anthropic.NotFoundError) as ae:
        t.an.models.retrieve("nope")
    assert ae.value.body["type"] == "error" and ae.value.body["error"]["type"] == "not_found_error"
    r = httpx.get(denv.url + "/v1/models/gpt-test", headers={"anthropic-version": "2023-06-01"}, timeout=10)
    assert_error(r, 401, "anthropic")  # errors of Anthropic-style requests in Anthropic's envelope


@pytest.mark.parametrize("status", [404, 405])
def test_count_tokens_falls_back_when_upstream_has_no_endpoint(denv: Any, status: int) -> None:
    t = Tenant(denv)
    denv.upstream.enqueue(Script(endpoint="count_tokens", status=status, error_type="not_found_error",
                                 error_message="Not found"))
    count = t.an.messages.count_tokens(model="claude-test", messages=MSGS)
    assert count.input_tokens > 0
    assert [r.endpoint for r in denv.upstream.requests] == ["count_tokens"]


def test_count_tokens_other_upstream_errors_still_reported(denv: Any) -> None:
    t = Tenant(denv)
    denv.upstream.enqueue(Script(endpoint="count_tokens", status=400, error_message="bad tool schema"))
    with pytest.raises(anthropic.BadRequestError) as exc:
        t.an.messages.count_tokens(model="claude-test", messages=MSGS)
    assert "bad tool schema" in str(exc.value)


@pytest.mark.parametrize("valid", ["bearer", "x-api-key"])
def test_both_auth_headers_accepted_when_either_is_valid(denv: Any, valid: str) -> None:
    t = Tenant(denv)
    wrong = "sk-a2a-" + "0" * 40
    headers = ({"authorization": f"Bearer {t.key}", "x-api-key": wrong} if valid == "bearer"
               else {"authorization": f"Bearer {wrong}", "x-api-key": t.key})
    # what the Anthropic SDK sends when ANTHROPIC_API_KEY and ANTHROPIC_AUTH_TOKEN are both set
    r = httpx.post(denv.url + "/v1/messages", headers={**headers, "anthropic-version": "2023-06-01"}, timeout=20,
                   json={"model": "claude-test", "max_tokens": 16, "messages": MSGS})
    assert r.status_code == 200, r.text
    assert r.json()["content"][0]["text"] == "Hello from upstream"
    bad = an_client(denv, wrong)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="claude-test", max_tokens=16, messages=MSGS)
    t.only_record()


def test_temperature_and_top_p_never_both_to_anthropic(denv: Any) -> None:
    t = Tenant(denv)
    h = {"x-api-key": t.key, "anthropic-version": "2023-06-01"}
    for extra in ({"temperature": 0.3, "top_p": 0.9}, None, {"top_p": 0.9}):
        if extra is None:
            t.oa.chat.completions.create(model="claude-test", messages=MSGS, temperature=0.3, top_p=0.9)
            continue
        r = httpx.post(denv.url + "/v1/messages", headers=h, timeout=20,
                       json={"model": "claude-test", "max_tokens": 16, "messages": MSGS, **extra})
        assert r.status_code == 200, r.text
    sent = [orjson.loads(r.body) for r in denv.upstream.requests]
    assert [(b.get("temperature"), b.get("top_p")) for b in sent] == [(0.3, None), (0.3, None), (None, 0.9)]
    assert len(t.records()) == 3


@pytest.fixture
def capped(denv: Any) -> dict[str, str]:
    """Models whose upstream answers at most 8192 tokens, on each channel protocol."""
    names = {"openai": "capped-oai", "anthropic": "capped-ant"}
    have = {m.model_id for m in denv.call(denv.services.catalog.list_models())}
    for protocol, name in names.items():
        if name not in have:
            from a2agent.billing.money import Prices

            denv.call(denv.services.catalog.add_model(
                name, channel="oai" if protocol == "openai" else "ant", prices=Prices(1_000_000, 2_000_000, 0, 0),
                max_output_tokens=8192))
    return names


def test_max_output_clamps_callers_max_tokens(denv: Any, capped: dict[str, str]) -> None:
    t = Tenant(denv)
    h = {"x-api-key": t.key, "anthropic-version": "2023-06-01"}
    for model in capped.values():  # Claude Code asks for 32000+; the upstream allows 8192
        r = httpx.post(denv.url + "/v1/messages", headers=h, timeout=20,
                       json={"model": model, "max_tokens": 128000, "messages": MSGS})
        assert r.status_code == 200, r.text
        t.oa.chat.completions.create(model=model, messages=MSGS, max_tokens=100000)
        t.oa.responses.create(model=model, input="hi", max_output_tokens=64000)
    sent = [orjson.loads(r.body) for r in denv.upstream.requests]
    assert [b.get("max_tokens", b.get("max_completion_tokens")) for b in sent] == [8192] * 6
    t.oa.chat.completions.create(model=capped["openai"], messages=MSGS, max_tokens=100)
    assert orjson.loads(denv.upstream.requests[-1].body)["max_tokens"] == 100  # below the cap: untouched
    assert len(t.records()) == 7
