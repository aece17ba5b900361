"""Claude Code (the real CLI from npm) through the gateway: a Bash tool round trip on a model
served by an OpenAI-protocol channel (translated) and by an Anthropic-protocol channel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from a2agent.billing.verify import verify
from tests.conftest import Env
from tests.support.script import Script, ToolCall

MARKER = "CC-MARKER-4242"


def claude_bin() -> str:
    path = os.environ.get("A2AGENT_CLAUDE_BIN") or shutil.which("claude")
    repo_local = Path(__file__).resolve().parents[2] / ".tools/node_modules/.bin/claude"
    if not path and repo_local.exists():
        path = str(repo_local)
    if not path:
        pytest.fail("Claude Code is not installed: scripts/test installs it (npm)")
    return path


def _text_of(req) -> str:
    return json.dumps(req.json or {})


def _has_tool_result(req) -> bool:
    body = req.json or {}
    for msg in body.get("messages", []):
        if msg.get("role") == "tool" and MARKER in json.dumps(msg.get("content")):
            return True  # OpenAI shape (translated)
        content = msg.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result" and MARKER in json.dumps(block):
                    return True
    return False


def _wants_bash(req) -> bool:
    return "Bash" in _text_of(req) and not _has_tool_result(req) and MARKER not in json.dumps(
        (req.json or {}).get("messages", [])[-1:])


def run_claude(env: Env, key: str, model: str, tmp_path: Path, prompt: str) -> subprocess.CompletedProcess[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    child_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": env.url,
        "ANTHROPIC_AUTH_TOKEN": key,
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": model,
        "ANTHROPIC_DEFAULT_SONNET_MODEL": model,
        "ANTHROPIC_DEFAULT_OPUS_MODEL": model,
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "CLAUDE_CODE_DISABLE_OFFICIAL_MARKETPLACE_AUTOINSTALL": "1",
    }
    return subprocess.run(
        [claude_bin(), "-p", prompt, "--allowedTools", "Bash", "--output-format", "json"],
        env=child_env, cwd=work, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180,
    )


@pytest.mark.parametrize("channel", ["oai", "ant"])
def test_claude_code_bash_round_trip(env: Env, tmp_path: Path, channel: str) -> None:
    model = f"cc-{channel}"
    env.model(model, channel, upstream_model="upstream-" + channel)
    acc = env.account(balance_usd=5)
    key = env.key(acc.id, "claude-code")
    env.upstream.set_default(Script(text="OK"))
    env.upstream.enqueue(Script(match=_has_tool_result, text=f"The command printed {MARKER}. Done.",
                                repeat=5))
    env.upstream.enqueue(Script(match=_wants_bash, tool_calls=[
        ToolCall("Bash", {"command": f"echo {MARKER}", "description": "Print the marker"})]))

    result = run_claude(env, key, model, tmp_path, "Run `echo " + MARKER + "` with Bash and tell me what it printed.")
    assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(result.stdout)
    assert out["is_error"] is False, out
    assert MARKER in out["result"]

    # Claude Code really ran the tool and sent its output back through the gateway
    tool_turns = [r for r in env.upstream.requests if _has_tool_result(r)]
    assert tool_turns, "the tool result never reached the upstream"
    first = env.upstream.requests[0]
    if channel == "oai":
        assert first.path.endswith("/chat/completions")
        assert first.headers["authorization"] == "Bearer upstream-oai"
    else:
        assert first.path == "/v1/messages"
        assert first.headers["x-api-key"] == "upstream-ant"
        assert "claude-code" in first.headers.get("anthropic-beta", "")
    assert all(key not in json.dumps(r.headers) for r in env.upstream.requests)

    env.settle_all()
    records = [r for r in env.records(acc.id) if r.model == model]
    assert len(records) >= 2 and all(r.status == "ok" for r in records)
    assert all(r.input_tokens > 0 and r.output_tokens > 0 and r.cost_micro > 0 for r in records)
    spent = sum(r.cost_micro for r in env.records(acc.id))
    assert env.balance(acc.id) == 5_000_000 - spent
    assert env.call(verify(env.services.db)) == []
