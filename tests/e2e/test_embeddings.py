"""POST /v1/embeddings: passed through to OpenAI-protocol channels, charged for input tokens."""

from __future__ import annotations

import openai
import pytest

from a2agent.billing.money import cost_micro
from tests.conftest import Env


def test_embeddings_through_the_gateway(env: Env) -> None:
    acc = env.account()
    client = openai.OpenAI(base_url=env.url + "/v1", api_key=env.key(acc.id), max_retries=0)
    result = client.embeddings.create(model="gpt-test", input=["hello world", "second text"])
    assert len(result.data) == 2 and all(len(d.embedding) > 0 for d in result.data)
    sent = env.upstream.requests[-1]
    assert sent.path == "/v1/embeddings" and sent.json["model"] == "gpt-4o-mini"
    assert sent.headers["authorization"] == "Bearer upstream-oai"
    env.settle_all()
    (rec,) = env.records(acc.id)
    prices = {m.model_id: m.prices for m in env.call(env.services.catalog.list_models())}
    assert rec.status == "ok" and rec.usage_source == "upstream" and rec.stream is False
    assert rec.input_tokens == result.usage.prompt_tokens > 0 and rec.output_tokens == 0
    assert rec.cost_micro == cost_micro(prices["gpt-test"], rec.input_tokens, 0)
    assert env.balance(acc.id) == 10_000_000 - rec.cost_micro


def test_embeddings_errors(env: Env) -> None:
    acc = env.account()
    client = openai.OpenAI(base_url=env.url + "/v1", api_key=env.key(acc.id), max_retries=0)
    with pytest.raises(openai.BadRequestError, match="does not support embeddings"):
        client.embeddings.create(model="claude-test", input="hi")  # an Anthropic channel
    with pytest.raises(openai.BadRequestError, match="input"):
        client.embeddings.create(model="gpt-test", input=[])
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="nope", input="hi")
    bad = openai.OpenAI(base_url=env.url + "/v1", api_key="sk-a2a-" + "x" * 40, max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.embeddings.create(model="gpt-test", input="hi")
    assert env.upstream.requests == []
    # only the unknown model is in the request log (refused, uncharged); 400s are not logged
    assert [(r.status, r.http_status, r.cost_micro) for r in env.records(acc.id)] == [
        ("refused", 404, 0)]
