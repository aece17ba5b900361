"""The small endpoints: /v1/models, /v1/usage, count_tokens, probes, health (SPEC §4)."""

from __future__ import annotations

import httpx
import pytest

from a2agent.billing.money import Prices
from tests.dataplane.conftest import MSGS, expected_cost
from tests.support import Script, Usage, estimate_input_tokens


def test_models_openai_list_shape(denv, tenant):
    r = httpx.get(denv.url + "/v1/models", headers={"authorization": f"Bearer {tenant.key}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["claude-test", "gpt-test"]
    for m in body["data"]:
        assert m["object"] == "model" and isinstance(m["created"], int) and isinstance(m["owned_by"], str)
    # through the SDKs
    assert sorted(m.id for m in tenant.oa.models.list()) == ["claude-test", "gpt-test"]
    page = tenant.an.models.list()  # the anthropic SDK's own shape (id, type, display_name, created_at)
    assert sorted(m.id for m in page.data) == ["claude-test", "gpt-test"]
    assert all(m.type == "model" and m.display_name for m in page.data)
    assert denv.upstream.requests == []  # answered from the catalogue, not the upstream


def test_models_lists_only_callable_models(denv, tenant):
    """A model without a route, or whose every channel is disabled, cannot be called: not listed."""
    cat = denv.services.catalog
    prices = Prices(1, 1, 1, 1)
    denv.call(cat.add_channel("spare", protocol="openai", base_url=denv.upstream.openai_base, api_key="upstream-spare"))
    denv.call(cat.add_model("routeless", channel="oai", prices=prices))
    denv.call(cat.remove_route("routeless", "oai"))
    denv.call(cat.add_model("on-disabled", channel="spare", prices=prices))
    denv.call(cat.add_model("visible-new", channel="oai", prices=prices))
    denv.call(cat.update_channel("spare", enabled=False))
    try:
        ids = [m.id for m in tenant.oa.models.list()]
        assert "visible-new" in ids  # a catalogue change shows on the next request
        assert "routeless" not in ids and "on-disabled" not in ids, ids
        with pytest.raises(Exception) as ei:
            tenant.oa.chat.completions.create(model="on-disabled", messages=MSGS)
        assert getattr(ei.value, "status_code", None) in (404, 503)
    finally:
        for m in ("routeless", "on-disabled", "visible-new"):
            denv.call(cat.remove_model(m))
        denv.call(cat.remove_channel("spare"))


def test_usage_reports_the_calling_keys_totals(denv, tenant):
    other_key = denv.key(tenant.id, "other")
    denv.upstream.enqueue(Script(usage=Usage(input_tokens=100, output_tokens=20)))
    tenant.oa.chat.completions.create(model="gpt-test", messages=MSGS)
    denv.upstream.enqueue(Script(usage=Usage(input_tokens=10, output_tokens=5, cache_read_tokens=1000,
                                             cache_write_tokens=8)))
    with tenant.an.messages.stream(model="claude-test", max_tokens=20, messages=MSGS) as s:
        s.until_done()
    # a request with the account's other key is not this key's usage
    httpx.post(denv.url + "/v1/chat/completions", json={"model": "gpt-test", "messages": MSGS},
               headers={"authorization": f"Bearer {other_key}"}).raise_for_status()
    denv.settle_all()

    cost = expected_cost(100, 20) + expected_cost(10, 5, 1000, 8)
    for headers in ({"authorization": f"Bearer {tenant.key}"}, {"x-api-key": tenant.key}):
        r = httpx.get(denv.url + "/v1/usage", headers=headers)
        assert r.status_code == 200
        assert tenant.key not in r.text and other_key not in r.text  # never echoes a key
        assert tenant.key[-4:] in r.text  # ...but names it by its masked form
        body = r.json()
        total = body["total"]
        assert total["requests"] == 2 and body["requests"] == 2
        assert (total["input_tokens"], total["output_tokens"], total["cache_read_tokens"],
                total["cache_write_tokens"]) == (110, 25, 1000, 8)
        assert total["total_tokens"] == 110 + 25 + 1000 + 8
        assert total["cost_micro"] == cost
        assert body["today"]["requests"] == 2 and body["today"]["cost_micro"] == cost
        assert body["balance_micro_usd"] == tenant.balance()
        assert r.headers.get("cache-control") == "no-store"
    r = httpx.get(denv.url + "/v1/usage", headers={"authorization": f"Bearer {other_key}"})
    assert r.json()["total"]["requests"] == 1


def test_count_tokens(denv, tenant):
    body = {"model": "claude-test", "messages": MSGS, "system": "be brief"}
    r = httpx.post(denv.url + "/v1/messages/count_tokens?beta=true", json=body,
                   headers={"x-api-key": tenant.key, "anthropic-beta": "token-counting-2024-11-01"})
    assert r.status_code == 200
    (up,) = denv.upstream.requests  # Anthropic channel: the upstream's own count
    assert up.path == "/v1/messages/count_tokens" and up.json["model"] == "claude-sonnet-4-5"
    assert up.headers["x-api-key"] == "upstream-ant" and tenant.key not in str(up.headers)
    assert r.json() == {"input_tokens": estimate_input_tokens(up.json)}
    assert tenant.an.messages.count_tokens(model="claude-test", messages=MSGS).input_tokens > 0
    # an OpenAI-channel model is counted locally, never faked
    n = tenant.an.messages.count_tokens(model="gpt-test", messages=MSGS).input_tokens
    assert n > 0 and len(denv.upstream.requests) == 2
    assert tenant.records() == []  # counting is free


@pytest.mark.parametrize("method,path", [("HEAD", "/"), ("HEAD", "/api/hello"), ("GET", "/api/hello"),
                                         ("GET", "/healthz"), ("GET", "/readyz"), ("HEAD", "/healthz")])
def test_probes(denv, method, path):
    r = httpx.request(method, denv.url + path)
    assert r.status_code == 200


def test_event_logging_batch(denv):
    r = httpx.post(denv.url + "/api/event_logging/batch", json={"events": [{"event_type": "x"}]})
    assert r.status_code == 200 and r.json() == {}


def test_request_id_header(denv, tenant):
    r = tenant.oa.chat.completions.with_raw_response.create(model="gpt-test", messages=MSGS)
    rid = r.headers.get("x-request-id")
    assert rid and rid.startswith("req_")
    assert tenant.only_record().id == rid
