"""Property-based fuzzing of every data-plane endpoint (issue 13): both caller protocols, stream
and not, every route kind (passthrough, both translation lanes, embeddings, count_tokens), with
random types per field, deep nesting, huge and odd values and raw bytes.

Properties, per request: no 5xx, no hang (a bounded client timeout), no circuit breaker moved,
and once the request's background work is done nothing is held (concurrency slot, channel slot,
balance hold); the books verify at the end.

The normal run is bounded (``A2AGENT_FUZZ_EXAMPLES``, default 600 requests). The long profile
is on demand: ``A2AGENT_FUZZ_EXAMPLES=20000 pytest tests/dataplane/test_fuzz_edge.py``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from a2agent.billing.verify import verify
from tests.dataplane.conftest import Tenant
from tests.dataplane.test_tenant_safety import DEEP, breakers, held, nested

EXAMPLES = int(os.environ.get("A2AGENT_FUZZ_EXAMPLES", "600"))

ENDPOINTS = {  # path → caller protocol
    "/v1/chat/completions": "openai",
    "/v1/messages": "anthropic",
    "/v1/messages/count_tokens": "anthropic",
    "/v1/embeddings": "openai",
}
MODELS = ["gpt-test", "claude-test", "gpt-test", "claude-test", "no-such-model", ""]

leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
    st.sampled_from(["", "user", "assistant", "system", "tool", "text", "image", "high", "auto", "none",
                     "tool_use", "tool_result", "function", "json_schema", "\x00", "\u202e", "🦜" * 3]),
)
any_json = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=16)

BLOCK_TYPES = ["text", "image", "image_url", "tool_use", "tool_result", "thinking", "redacted_thinking",
               "document", "input_audio", "file", "server_tool_use", "weird"]


@st.composite
def block(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(any_json)
    b: dict[str, Any] = {"type": draw(st.sampled_from(BLOCK_TYPES))}
    for name in draw(st.lists(st.sampled_from(["text", "id", "name", "input", "content", "tool_use_id",
                                               "source", "image_url", "thinking", "signature",
                                               "cache_control", "is_error"]), max_size=4)):
        b[name] = draw(st.one_of(st.text(max_size=30), any_json))
    return b


@st.composite
def message(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 14)) == 0:
        return draw(any_json)
    msg: dict[str, Any] = {"role": draw(st.one_of(st.sampled_from(["user", "assistant", "system", "tool",
                                                                 "developer"]), leaf))}
    msg["content"] = draw(st.one_of(st.text(max_size=60), st.lists(block(), max_size=4), any_json))
    if draw(st.booleans()):
        key = draw(st.sampled_from(["tool_calls", "tool_call_id", "name", "reasoning_content"]))
        msg[key] = draw(st.one_of(any_json, st.lists(st.fixed_dictionaries(
            {"id": st.text(max_size=8), "type": st.just("function"),
             "function": st.fixed_dictionaries({"name": st.text(max_size=8), "arguments": any_json})}),
            max_size=2)))
    return msg


FIELDS = ["max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "tools", "tool_choice",
          "stop", "stop_sequences", "reasoning_effort", "stream_options", "metadata", "response_format",
          "thinking", "system", "n", "user", "parallel_tool_calls", "seed", "output_config", "input",
          "encoding_format", "dimensions", "context_management", "service_tier"]
PLAUSIBLE: dict[str, Any] = {
    "max_tokens": st.integers(-5, 10**12), "max_completion_tokens": st.integers(-5, 10**9),
    "temperature": st.floats(-5, 5), "top_p": st.floats(-1, 2), "n": st.integers(-1, 5),
    "reasoning_effort": st.sampled_from(["low", "medium", "high", "none", "minimal", "xhigh", "max"]),
    "tools": st.lists(st.one_of(
        st.fixed_dictionaries({"name": st.text(max_size=70), "input_schema": any_json}),
        st.fixed_dictionaries({"type": st.just("function"), "function": st.fixed_dictionaries(
            {"name": st.text(max_size=70), "parameters": any_json})}),
        st.fixed_dictionaries({"type": st.sampled_from(["web_search_20250305", "bash_20250124"]),
                               "name": st.text(max_size=10)})), max_size=3),
    "tool_choice": st.one_of(st.sampled_from(["auto", "none", "required", "any"]),
                             st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "tool",
                                                                             "function", "none"]),
                                                    "name": st.text(max_size=8)})),
    "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=6)),
    "stream_options": st.fixed_dictionaries({"include_usage": any_json}),
    "response_format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema",
                                                                       "xml"]), "json_schema": any_json}),
    "thinking": st.fixed_dictionaries({"type": st.sampled_from(["enabled", "disabled", "adaptive", "x"]),
                                       "budget_tokens": st.integers(-10, 10**7)}),
    "system": st.one_of(st.text(max_size=40), st.lists(block(), max_size=3)),
    "input": st.one_of(st.text(max_size=40), st.lists(st.one_of(st.text(max_size=10), st.integers(),
                                                                 any_json), max_size=4)),
}


@st.composite
def request(draw: st.DrawFn) -> tuple[str, str, bytes]:
    path = draw(st.sampled_from(list(ENDPOINTS)))
    kind = draw(st.integers(0, 19))
    if kind == 0:  # not a JSON object at all
        raw = draw(st.one_of(st.binary(max_size=200), st.sampled_from(
            [b"", b"null", b"[]", b'"x"', b"{", b'{"model":', b"\xff\xfe{}", b"{}" * 3, b"NaN"])))
        return path, ENDPOINTS[path], raw
    if 3 <= kind <= 10:  # a well-formed request with a few plausible (often odd) options
        body = {"model": draw(st.sampled_from(["gpt-test", "claude-test"]))}
        if path == "/v1/embeddings":
            body["input"] = draw(st.one_of(st.text(min_size=1, max_size=40),
                                           st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=3)))
        else:
            body["messages"] = [{"role": "user", "content": draw(st.text(min_size=1, max_size=60))}]
            if path == "/v1/messages":
                body["max_tokens"] = draw(st.integers(1, 4096))
        if path in ("/v1/chat/completions", "/v1/messages"):
            body["stream"] = draw(st.booleans())
        for name in draw(st.lists(st.sampled_from(list(PLAUSIBLE)), max_size=2, unique=True)):
            if name != "input":
                body[name] = draw(PLAUSIBLE[name])
        return path, ENDPOINTS[path], json.dumps(body).encode()
    body = {"model": draw(st.one_of(st.sampled_from(MODELS), leaf))}
    if path == "/v1/embeddings":
        body["input"] = draw(PLAUSIBLE["input"])
    else:
        body["messages"] = draw(st.one_of(st.lists(message(), min_size=0, max_size=4), any_json))
        if path == "/v1/messages":
            body["max_tokens"] = draw(st.one_of(st.integers(1, 4096), st.integers(-3, 10**10), leaf))
    if path != "/v1/messages/count_tokens":
        body["stream"] = draw(st.one_of(st.booleans(), st.booleans(), leaf))
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=5, unique=True)):
        strategy = PLAUSIBLE.get(name)
        body[name] = draw(strategy if strategy is not None and draw(st.booleans()) else any_json)
    deep = 0
    if kind == 1:  # deep nesting somewhere, around the limit and far past it
        deep = draw(st.sampled_from([30, 62, 63, 64, 65, 254, 256, 300, 1000, 1025, 3000]))
        body[draw(st.sampled_from(["metadata", "tools", "extra", "messages"]))] = DEEP
    elif kind == 2:  # a big value
        body["messages"] = [{"role": "user", "content": "x" * draw(st.integers(10_000, 300_000))}]
    raw = json.dumps(body).encode()  # stdlib: big integers and odd floats as they come
    if deep:
        raw = raw.replace(json.dumps(DEEP).encode(), nested(deep))
    return path, ENDPOINTS[path], raw


def _one(env: Any, client: httpx.Client, key: str, path: str, raw: bytes) -> int:
    with client.stream("POST", env.url + path, content=raw,
                       headers={"authorization": f"Bearer {key}", "content-type": "application/json"}) as r:
        text = r.read()
    assert r.status_code < 500, (r.status_code, text[:500], raw[:300])
    assert b"Internal gateway error" not in text, (text[:500], raw[:300])
    return r.status_code


@pytest.mark.timeout(max(300, EXAMPLES // 10))  # the long profile takes ~20 ms a request
@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=EXAMPLES <= 1000,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(req=request())
def test_fuzz_every_endpoint_no_5xx_nothing_held(fuzz_state, req):
    env, t, client, seen = fuzz_state
    path, _protocol, raw = req
    seen.append(_one(env, client, t.key, path, raw))
    if len(seen) % 25 == 0:  # background work done, nothing held, no breaker moved
        assert held(env, t) == {"concurrency": 0, "oai": 0, "ant": 0, "reserved": 0}
        assert breakers(env) == {"oai": ("closed", 0), "ant": ("closed", 0)}


@pytest.fixture
def fuzz_state(denv):
    env, t, client, seen = denv, Tenant(denv, balance_usd=5), httpx.Client(timeout=60), []
    try:
        yield env, t, client, seen
        assert held(env, t) == {"concurrency": 0, "oai": 0, "ant": 0, "reserved": 0}
        assert breakers(env) == {"oai": ("closed", 0), "ant": ("closed", 0)}
        assert env.call(verify(env.services.db)) == []
        assert t.balance() >= 0
        counts = {code: seen.count(code) for code in sorted(set(seen))}
        print(f"\nfuzz: {len(seen)} requests, statuses {counts}, 5xx: 0")
    finally:
        client.close()
        t.close()
