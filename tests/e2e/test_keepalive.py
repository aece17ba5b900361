"""A silent upstream mid-stream: the caller gets keep-alives (Anthropic `ping` events, OpenAI SSE
comments) and the stream still completes; the SDKs parse it unchanged."""

from __future__ import annotations

import anthropic
import httpx
import openai

from tests.conftest import Env
from tests.support.script import Script


def test_keepalives_while_the_upstream_is_silent(env: Env) -> None:
    env.gw.gateway.relay.keepalive_seconds = 0.2
    env.model("claude-via-oai", "oai", upstream_model="gpt-up")
    acc = env.account()
    key = env.key(acc.id)

    env.upstream.enqueue(Script(text="slow but fine", stall_mid_stream=1.0, stall_after=1))
    body = {"model": "claude-via-oai", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    with httpx.stream("POST", env.url + "/v1/messages", json=body, timeout=10,
                      headers={"x-api-key": key, "anthropic-version": "2023-06-01"}) as r:
        raw = r.read().decode()
    assert raw.count("event: ping") >= 2
    assert raw.index("event: message_start") < raw.index("event: message_stop")

    env.upstream.enqueue(Script(text="slow but fine", stall_mid_stream=1.0, stall_after=1))
    with anthropic.Anthropic(base_url=env.url, api_key=key, max_retries=0).messages.stream(
            model="claude-via-oai", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as s:
        assert s.get_final_text() == "slow but fine"

    env.upstream.enqueue(Script(text="slow but fine", stall_mid_stream=1.0, stall_after=1))
    chunks = openai.OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0).chat.completions.create(
        model="gpt-test", stream=True, messages=[{"role": "user", "content": "hi"}])
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "slow but fine"
    env.settle_all()
    assert all(r.status == "ok" for r in env.records(acc.id))
