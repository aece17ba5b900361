"""What operators see (issue 9 §3): `a2agent channel list`, the admin channels page, and
`a2agent channel test NAME`."""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

import httpx

from a2agent.routing.probe import probe_channel
from a2agent.routing.status import channel_status
from tests.conftest import run_cli
from tests.routing.conftest import PRICES, TEXT_B, Rig, Tenant, assert_answer, attempts
from tests.support import Script


def _fresh_model(rig: Rig, *routes: tuple[str, str, int]) -> tuple[str, list[str]]:
    """A model on channels of its own (status counts are per channel name and the module's
    gateway keeps its records): routes are (upstream A/B, protocol, priority)."""
    cat = rig.env.services.catalog
    tag = secrets.token_hex(3)
    model, names = f"st-{tag}", []
    for i, (where, protocol, prio) in enumerate(routes):
        up = rig.up[where]
        name = f"st-{tag}-{i}"
        rig.env.call(cat.add_channel(name, protocol=protocol, api_key="k",
                                     base_url=up.openai_base if protocol == "openai" else up.anthropic_base))
        rig.env.call(cat.add_model(model, channel=name, prices=PRICES, upstream_model="up-st", priority=prio))
        names.append(name)
    return model, names


def _cli_env(rig: Rig) -> dict[str, str]:
    s = rig.env.gw.settings
    return {"A2AGENT_DATA_DIR": str(s.data_dir), "A2AGENT_DATABASE_URL": s.database_url}


def test_channel_list_shows_circuit_error_rate_and_latency(rig: Rig, tenant: Tenant) -> None:
    rig.gw.health.failure_threshold = 1
    good, (good_ch,) = _fresh_model(rig, ("A", "openai", 0))
    bad, (bad_ch,) = _fresh_model(rig, ("A", "anthropic", 0))
    for _ in range(3):
        assert rig.send(tenant, "openai", good, stream=False).status == 200
    rig.a.enqueue(Script(status=500))
    assert rig.send(tenant, "openai", bad, stream=False).status == 502
    assert rig.send(tenant, "openai", bad, stream=False).status == 503  # circuit open
    tenant.records()  # settled
    rig.env.call(rig.gw._beat())  # the heartbeat (every 5 s) carries this instance's circuit states

    status = rig.env.call(channel_status(rig.env.services))
    assert status[good_ch]["circuit"] == "closed"
    assert (status[good_ch]["requests_15m"], status[good_ch]["error_rate_15m"]) == (3, 0.0)
    assert status[good_ch]["p50_ttfb_ms"] is not None
    assert status[bad_ch]["circuit"] == "open"
    assert (status[bad_ch]["requests_15m"], status[bad_ch]["error_rate_15m"]) == (1, 1.0)

    out = run_cli("channel", "list", "--json", env=_cli_env(rig))
    assert out.returncode == 0, out.stderr
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows[good_ch]["circuit"] == "closed" and rows[good_ch]["error_rate_15m"] == 0.0
    assert rows[bad_ch]["circuit"] == "open" and rows[bad_ch]["error_rate_15m"] == 1.0
    assert not any("k-" in json.dumps(r) or "api_key" in r for r in rows.values())  # credentials never shown


def test_channel_list_counts_failures_that_were_failed_over(rig: Rig, tenant: Tenant) -> None:
    model, (primary, backup) = _fresh_model(rig, ("A", "openai", 10), ("B", "openai", 0))
    rig.a.enqueue(Script(status=500, repeat=2))
    for _ in range(2):
        assert_answer(rig.send(tenant, "openai", model, stream=False), "openai", False, TEXT_B)
    assert [attempts(rec)[0] for rec in tenant.records()] == [(primary, "http_500")] * 2
    status = rig.env.call(channel_status(rig.env.services))
    assert status.get(primary, {}).get("error_rate_15m") == 1.0, status.get(primary)


def _admin_client(rig: Rig) -> httpx.Client:
    email = f"root-{secrets.token_hex(4)}@example.com"
    rig.env.account(email, admin=True)
    http = httpx.Client(base_url=rig.url, timeout=20)
    page = http.get("/login").text
    token = re.search(r'name="csrf" value="([^"]+)"', page) or re.search(r'data-csrf="([^"]*)"', page)
    r = http.post("/login", data={"email": email, "password": "password123", "csrf": token.group(1) if token else ""})
    assert r.status_code == 303, r.text[:300]
    return http


def test_admin_channels_page_shows_state_and_error_rate(rig: Rig, tenant: Tenant) -> None:
    rig.gw.health.failure_threshold = 2
    rig.a.enqueue(Script(status=500, repeat=2))
    for _ in range(2):
        assert_answer(rig.send(tenant, "openai", "duo-oai", stream=False), "openai", False, TEXT_B)
    http = _admin_client(rig)
    try:
        html = http.get("/admin/channels").text
    finally:
        http.close()
    row = next(r for r in html.split("<tr>") if ">a-oai<" in r)
    assert "open" in row and "healthy" not in row, row
    assert "100%" in row, row  # both attempts on a-oai failed
    row_b = next(r for r in html.split("<tr>") if ">b-ant<" in r)
    assert "healthy" in row_b and "0%" in row_b, row_b


def test_probe_reports_each_outcome_without_touching_health(rig: Rig) -> None:
    def probe(name: str) -> dict[str, Any]:
        return rig.env.call(probe_channel(rig.gw, name))

    for name in ("a-oai", "a-ant"):
        result = probe(name)
        assert result["ok"] and result["status"] == 200, result
        sent = rig.a.requests[-1].json
        assert sent["max_tokens"] == 1 and sent["model"].startswith("up-"), sent
    rig.a.enqueue(Script(status=500, error_message="upstream is on fire"))
    result = probe("a-oai")
    assert not result["ok"] and result["status"] == 500 and "upstream is on fire" in result["message"], result
    rig.a.enqueue(Script(stall_before_headers=3))
    result = probe("a-ant")  # the channel's own first-byte timeout (1 s) applies
    assert not result["ok"] and result["status"] is None and "1s" in result["message"], result
    assert result["latency_ms"] < 2500
    rig.a.enqueue(Script(reset_before_headers=True))
    assert not probe("a-oai")["ok"]
    for name in ("a-oai", "a-ant"):
        st = rig.state(name)
        assert st.consecutive_failures == 0 and not st.outcomes and rig.describe(name) == "closed"
    assert rig.a.wait_until(lambda u: u.client_disconnects == 1, 5)


def test_channel_test_cli(rig: Rig) -> None:
    out = run_cli("channel", "test", "a-ant", env=_cli_env(rig))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("a-ant: ok (HTTP 200"), out.stdout
    rig.a.enqueue(Script(status=503, error_message="maintenance window"))
    out = run_cli("channel", "test", "a-oai", env=_cli_env(rig))
    assert out.returncode == 1, out.stdout + out.stderr
    assert "a-oai: FAILED (HTTP 503" in out.stdout and "maintenance window" in out.stdout, out.stdout
    out = run_cli("channel", "test", "no-such-channel", env=_cli_env(rig))
    assert out.returncode != 0 and "no channel named no-such-channel" in (out.stdout + out.stderr)
