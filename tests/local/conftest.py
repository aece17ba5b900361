"""A real embedded model (SmolLM2-135M via llama_cpp.server) behind a real gateway.

One runner and one gateway per module: starting the runner takes about a second, and every
test here drives real generation through the gateway's HTTP API.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from a2agent.providers.local_model import (
    CHANNEL,
    LocalModel,
    local_token_counter,
    unavailable_reason,
)
from tests.conftest import Env
from tests.support.gateway import ThreadedGateway, make_settings

INPUT_USD = 1.0  # per 1M tokens: 1 micro-USD a token
OUTPUT_USD = 2.0
QUEUE = 1


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "local_model: drives real generation through the embedded local model")


@dataclass
class LocalEnv:
    env: Env
    local: LocalModel
    key: str
    account_id: int

    @property
    def url(self) -> str:
        return self.env.url


@pytest.fixture(scope="module")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalEnv]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"local model not installed: {reason}")
    data: Path = tmp_path_factory.mktemp("local") / "data"
    settings = make_settings(data, local_model_input_price=INPUT_USD,
                             local_model_output_price=OUTPUT_USD, local_model_queue=QUEUE,
                             disconnect_drain_seconds=3.0)
    with ThreadedGateway(settings) as gw:
        local = LocalModel(settings, health_interval=1.0)
        assert local.start_and_register()
        try:
            gw.gateway.counters.register(CHANNEL, local_token_counter())
            env = Env(gw, None)  # type: ignore[arg-type] - no scripted upstream here
            account = env.account()
            yield LocalEnv(env=env, local=local, key=env.key(account.id, "local-tests"),
                           account_id=account.id)
        finally:
            local.stop()
