"""Official SDKs through translation: Anthropic SDK → OpenAI channel, OpenAI SDK → Anthropic
channel; stream and non-stream; a full tool round trip; thinking/reasoning; cache usage."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from a2agent.billing.money import cost_micro
from tests.conftest import Env
from tests.support.script import Script, ToolCall, Usage

WEATHER_TOOL_A = {"name": "get_weather", "description": "Weather for a city",
                  "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                                   "required": ["city"]}}
WEATHER_TOOL_O = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                                   "parameters": WEATHER_TOOL_A["input_schema"]}}


@pytest.fixture
def cross(env: Env) -> Env:
    env.model("claude-via-oai", "oai", upstream_model="gpt-up")
    env.model("gpt-via-ant", "ant", upstream_model="claude-up")
    return env


def _clients(env: Env) -> tuple[anthropic.Anthropic, openai.OpenAI, int]:
    acc = env.account(balance_usd=10)
    key = env.key(acc.id)
    return (anthropic.Anthropic(base_url=env.url, api_key=key, max_retries=0),
            openai.OpenAI(base_url=env.url + "/v1", api_key=key, max_retries=0), acc.id)


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_sdk_tool_round_trip_on_openai_channel(cross: Env, stream: bool) -> None:
    ac, _, account_id = _clients(cross)
    cross.upstream.enqueue(Script(tool_calls=[ToolCall("get_weather", {"city": "Paris"}, id="call_1"),
                                              ToolCall("get_weather", {"city": "Oslo"}, id="call_2")],
                                  reasoning="Two cities, two calls."))
    messages = [{"role": "user", "content": "Weather in Paris and Oslo?"}]
    kwargs = dict(model="claude-via-oai", max_tokens=256, tools=[WEATHER_TOOL_A], messages=messages,
                  system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}])
    if stream:
        with ac.messages.stream(**kwargs) as s:
            first = s.get_final_message()
    else:
        first = ac.messages.create(**kwargs)
    assert first.stop_reason == "tool_use"
    kinds = [b.type for b in first.content]
    assert kinds == ["thinking", "tool_use", "tool_use"]
    assert [b.input for b in first.content if b.type == "tool_use"] == [{"city": "Paris"}, {"city": "Oslo"}]
    up = cross.upstream.requests[-1].json
    assert up["model"] == "gpt-up" and up["tools"][0]["function"]["name"] == "get_weather"
    assert "cache_control" not in json.dumps(up)
    assert up["messages"][0] == {"role": "system", "content": "Be brief."}

    cross.upstream.enqueue(Script(text="Paris 20C, Oslo 5C."))
    results = [{"type": "tool_result", "tool_use_id": b.id, "content": f"{b.input['city']}: fine"}
               for b in first.content if b.type == "tool_use"]
    messages += [{"role": "assistant", "content": first.content}, {"role": "user", "content": results}]
    kwargs["messages"] = messages
    final = ac.messages.stream(**kwargs).__enter__().get_final_message() if stream else ac.messages.create(**kwargs)
    assert final.content[-1].text == "Paris 20C, Oslo 5C." and final.stop_reason == "end_turn"
    sent = cross.upstream.requests[-1].json["messages"]
    tool_msgs = [m for m in sent if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_msgs] == [("call_1", "Paris: fine"), ("call_2", "Oslo: fine")]
    cross.settle_all()
    records = cross.records(account_id)
    assert len(records) == 2 and all(r.status == "ok" and r.upstream_protocol == "openai" for r in records)


@pytest.mark.parametrize("stream", [False, True])
def test_openai_sdk_tool_round_trip_on_anthropic_channel(cross: Env, stream: bool) -> None:
    _, oc, account_id = _clients(cross)
    cross.upstream.enqueue(Script(tool_calls=[ToolCall("get_weather", {"city": "Rome"}, id="toolu_1")]))
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Rome?"}]
    if stream:
        with oc.chat.completions.stream(model="gpt-via-ant", messages=messages, tools=[WEATHER_TOOL_O]) as s:
            first = s.get_final_completion()
    else:
        first = oc.chat.completions.create(model="gpt-via-ant", messages=messages, tools=[WEATHER_TOOL_O])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == ("toolu_1", "get_weather",
                                                                                  {"city": "Rome"})
    up = cross.upstream.requests[-1].json
    assert up["model"] == "claude-up" and up["system"] == "Be brief." and up["max_tokens"] > 0
    assert up["tools"][0]["input_schema"]["required"] == ["city"]

    cross.upstream.enqueue(Script(text="Rome is sunny."))
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny, 25C"}]
    final = oc.chat.completions.create(model="gpt-via-ant", messages=messages, tools=[WEATHER_TOOL_O],
                                       stream=False)
    assert final.choices[0].message.content == "Rome is sunny."
    sent = cross.upstream.requests[-1].json["messages"]
    assert sent[-1]["role"] == "user"
    assert sent[-1]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny, 25C"}
    cross.settle_all()
    assert all(r.status == "ok" and r.upstream_protocol == "anthropic" for r in cross.records(account_id))


def test_cache_usage_is_charged_once_through_translation(cross: Env) -> None:
    ac, oc, account_id = _clients(cross)
    # OpenAI upstream: prompt_tokens 1000 of which 600 cached → Anthropic caller sees input 400 + cache 600
    cross.upstream.enqueue(Script(text="a b c", usage=Usage(input_tokens=400, output_tokens=3,
                                                            cache_read_tokens=600)))
    m = ac.messages.create(model="claude-via-oai", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    assert (m.usage.input_tokens, m.usage.cache_read_input_tokens, m.usage.output_tokens) == (400, 600, 3)
    # Anthropic upstream: input 100 + cache read 900 + cache write 50 → OpenAI prompt_tokens 1050, cached 900
    cross.upstream.enqueue(Script(text="x y", usage=Usage(input_tokens=100, output_tokens=2,
                                                          cache_read_tokens=900, cache_write_tokens=50)))
    r = oc.chat.completions.create(model="gpt-via-ant", messages=[{"role": "user", "content": "hi"}])
    assert (r.usage.prompt_tokens, r.usage.prompt_tokens_details.cached_tokens) == (1050, 900)
    cross.settle_all()
    prices = {m.model_id: m.prices for m in cross.call(cross.services.catalog.list_models())}
    recs = {r.model: r for r in cross.records(account_id)}
    a = recs["claude-via-oai"]
    assert (a.input_tokens, a.cache_read_tokens, a.output_tokens) == (400, 600, 3)
    assert a.cost_micro == cost_micro(prices["claude-via-oai"], 400, 3, 600, 0)
    o = recs["gpt-via-ant"]
    assert (o.input_tokens, o.cache_read_tokens, o.cache_write_tokens) == (100, 900, 50)
    assert o.cost_micro == cost_micro(prices["gpt-via-ant"], 100, 2, 900, 50)


def test_n_greater_than_one_is_refused_in_the_callers_protocol(cross: Env) -> None:
    _, oc, account_id = _clients(cross)
    with pytest.raises(openai.BadRequestError) as exc:
        oc.chat.completions.create(model="gpt-via-ant", n=2, messages=[{"role": "user", "content": "hi"}])
    assert "n" in str(exc.value)
    assert cross.upstream.requests == []
    assert cross.records(account_id) == []


def test_count_tokens_on_openai_channel_is_a_real_count(cross: Env) -> None:
    ac, _, _ = _clients(cross)
    short = ac.messages.count_tokens(model="claude-via-oai", messages=[{"role": "user", "content": "hi"}])
    long = ac.messages.count_tokens(model="claude-via-oai", tools=[WEATHER_TOOL_A],
                                    messages=[{"role": "user", "content": "hello " * 200}])
    assert 0 < short.input_tokens < long.input_tokens
    assert long.input_tokens >= 200
    assert cross.upstream.requests == []  # counted locally, never faked by the upstream
