"""Issue 7 end to end: `a2agent serve` on an empty data directory starts the embedded model,
registers it, answers a real request for smollm2-135m, and takes the runner down on exit;
a restart reuses the channel; a killed gateway does not leave an orphan runner behind."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import openai
import pytest

from a2agent.config import load_settings
from a2agent.providers.local_model import MODEL_ID, unavailable_reason
from a2agent.services import Services
from tests.support.gateway import GatewayProcess

pytestmark = pytest.mark.local_model


async def _tenant(data_dir: Path) -> str:
    services = Services(load_settings(environ={"A2AGENT_DATA_DIR": str(data_dir)}))
    try:
        acc = await services.accounts.create("local@example.com", "password123")
        await services.ledger.adjust(acc.id, 1_000_000, note="test")
        _, key = await services.accounts.create_key(acc.id, "local")
        return key
    finally:
        await services.close()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _runner_port(gw: GatewayProcess) -> int:
    out = "".join(gw.output)
    m = re.search(r"starting local model smollm2-135m on 127\.0\.0\.1:(\d+)", out)
    assert m and "ready in" in out, out
    return int(m.group(1))


def _ask(gw: GatewayProcess, key: str) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=60)
    resp = client.chat.completions.create(
        model=MODEL_ID, max_tokens=8, temperature=0,
        messages=[{"role": "user", "content": "Say hi."}])
    assert resp.choices[0].message.content.strip()
    assert resp.usage is not None and resp.usage.completion_tokens > 0


def test_fresh_install_serves_the_local_model(tmp_path: Path) -> None:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"local model not installed: {reason}")
    data = tmp_path / "data"
    gw = GatewayProcess(data, args=(), env={"A2AGENT_LOCAL_MODEL_QUEUE": "2"})
    with gw:
        runner_port = _runner_port(gw)
        key = asyncio.run(_tenant(data))
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key=key, max_retries=0, timeout=60)
        assert MODEL_ID in [m.id for m in client.models.list()]
        _ask(gw, key)
        assert _listening(runner_port)
    assert gw.proc is not None and gw.proc.returncode == 0
    assert not _listening(runner_port), "the runner outlived the gateway"

    # second start on the same data: same channel, same port when it is free, still answers
    gw2 = GatewayProcess(data, args=()).start()
    try:
        assert _runner_port(gw2) == runner_port
        _ask(gw2, key)
    finally:
        gw2.kill()  # SIGKILL: no chance to stop the runner
    deadline = time.monotonic() + 15
    while _listening(runner_port):
        assert time.monotonic() < deadline, "an orphaned runner kept serving after the gateway died"
        time.sleep(0.05)
