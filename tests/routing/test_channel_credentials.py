"""A channel whose own credential is refused upstream is a broken channel: the request fails
over to another channel, and the breaker counts the failure."""

from __future__ import annotations

import openai

from tests.conftest import Env
from tests.support.script import Script
from tests.support.upstream import ScriptedUpstream


def test_refused_channel_credential_fails_over(env: Env) -> None:
    with ScriptedUpstream(default_text="from backup") as backup:
        env.call(env.services.catalog.add_channel("backup", protocol="openai", base_url=backup.openai_base,
                                                  api_key="good", priority=-1))
        env.model("dual", "oai", upstream_model="gpt-a")
        env.model("dual", "backup", upstream_model="gpt-b")
        env.gw.gateway.health.failure_threshold = 2
        env.upstream.enqueue(Script(status=401, error_message="invalid api key", repeat=2))
        acc = env.account()
        client = openai.OpenAI(base_url=env.url + "/v1", api_key=env.key(acc.id), max_retries=0)
        for _ in range(2):
            answer = client.chat.completions.create(model="dual", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content == "from backup"
        env.settle_all()
        records = env.records(acc.id)
        assert all(r.status == "ok" and r.channel == "backup" for r in records)
        assert all('"http_401"' in r.attempts for r in records)
        oai = env.call(env.services.catalog.snapshot(None)).channels["oai"]
        assert env.gw.gateway.health.describe(oai) == "open"
