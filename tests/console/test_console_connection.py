"""Copy Connection Info pastes into a shell as is: the block copied from the keys page is fed to
bash, and child processes (a printer, the OpenAI and Anthropic SDKs reading only the
environment) see the variables and reach the gateway. The Codex lines are comments that parse
as TOML once uncommented. Screenshots at 1280×800 and 390×844 go to test-artifacts/console."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.console.conftest import PASSWORD, watch

pytestmark = pytest.mark.timeout(240)

VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL",
        "ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL")
PRINT_ENV = (f"import json, os; print(json.dumps({{k: os.environ.get(k) for k in {json.dumps(VARS)}}}))")
SDK_CALLS = """
import anthropic, openai, os
o = openai.OpenAI(max_retries=0).chat.completions.create(
    model="gpt-test", messages=[{"role": "user", "content": "hi"}])
a = anthropic.Anthropic(max_retries=0).messages.create(
    model=os.environ["ANTHROPIC_MODEL"], max_tokens=32, messages=[{"role": "user", "content": "hi"}])
print("ok", bool(o.choices[0].message.content), a.type)
"""


def paste_into_bash(block: str, then: str) -> subprocess.CompletedProcess[str]:
    """What a user does: paste the block into an interactive-like shell, then run a command."""
    script = block + then + "\n"
    return subprocess.run(["bash", "--noprofile", "--norc"], input=script, capture_output=True,
                          text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"})


def codex_toml(block: str) -> dict[str, Any]:
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("# Codex CLI"))
    body = [line[1:] for line in lines[start + 2:] if line.startswith("#   ")]
    return tomllib.loads("\n".join(body))


def sign_in_and_create_key(page: Any, email: str, label: str) -> str:
    page.goto("/login")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r".*/$"))
    page.goto("/keys")
    page.click("button:has-text('Create Key')")
    page.fill("#label", label)
    page.click("#create-key-dialog button[type=submit]")
    page.wait_for_selector("#new-key-dialog[open]")
    key = page.inner_text("#new-key-value").strip()
    page.click("text=I have saved my key")
    return key


def test_connection_block_pastes_into_bash(env: Any, browser: Any, artifacts: Path,
                                           console_errors: list[str]) -> None:
    env.account("dev@example.com", balance_usd=5)
    folder = artifacts / "console"
    folder.mkdir(parents=True, exist_ok=True)
    for width, height in ((1280, 800), (390, 844)):
        ctx = browser.new_context(base_url=env.url, viewport={"width": width, "height": height})
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=env.url)
        page = watch(ctx.new_page(), console_errors)
        key = sign_in_and_create_key(page, "dev@example.com", f"laptop-{width}")
        page.locator(f"tr[data-key-row] [data-key-name='laptop-{width}'][data-connection]").click()
        block = page.evaluate("navigator.clipboard.readText()")
        page.screenshot(path=str(folder / f"connection-keys-{width}x{height}.png"), full_page=True)
        ctx.close()

        # every line is a comment or an export: nothing fails as a command
        for line in block.splitlines():
            assert line.startswith(("# ", "#   ", "export ")), line
        assert f"# OpenAI base URL:    {env.url}/v1" in block
        done = paste_into_bash(block, f"{sys.executable} -c '{PRINT_ENV}'")
        assert done.returncode == 0 and done.stderr == "", done.stderr
        seen = json.loads(done.stdout)
        assert seen["OPENAI_API_KEY"] == key and seen["ANTHROPIC_AUTH_TOKEN"] == key
        assert seen["OPENAI_BASE_URL"] == env.url + "/v1"
        assert seen["ANTHROPIC_BASE_URL"] == env.url
        # models come from the catalogue: a Claude-named one, and the cheapest for Haiku
        assert seen["ANTHROPIC_MODEL"] == "claude-test"
        assert seen["ANTHROPIC_DEFAULT_HAIKU_MODEL"] in ("gpt-test", "claude-test")

        codex = codex_toml(block)
        assert codex["model_provider"] == "a2agent"
        assert codex["model_providers"]["a2agent"] == {
            "name": "A2Agent", "base_url": env.url + "/v1", "env_key": "OPENAI_API_KEY",
            "wire_api": "responses", "model_catalog_url": env.url + "/v1/codex/models"}

    # the SDKs, run from the pasted shell, find everything in the environment
    done = paste_into_bash(block, f"{sys.executable} -c '{SDK_CALLS}'")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok True message"
    assert not console_errors, console_errors


def test_placeholder_block_is_still_safe_to_paste(env: Any, browser: Any,
                                                  console_errors: list[str]) -> None:
    """A key this browser does not hold: the placeholder is quoted (no '<' redirection)."""
    account = env.account("ops@example.com")
    env.key(account.id, "made-by-cli")
    ctx = browser.new_context(base_url=env.url, viewport={"width": 1280, "height": 800})
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=env.url)
    page = watch(ctx.new_page(), console_errors)
    page.goto("/login")
    page.fill("#email", "ops@example.com")
    page.fill("#password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r".*/$"))
    page.goto("/keys")
    page.locator("tr[data-key-row] [data-key-name='made-by-cli'][data-connection]").click()
    block = page.evaluate("navigator.clipboard.readText()")
    ctx.close()
    assert "does not hold" in block
    done = paste_into_bash(block, f"{sys.executable} -c '{PRINT_ENV}'")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert json.loads(done.stdout)["OPENAI_API_KEY"] == "<YOUR_API_KEY>"
    assert not console_errors, console_errors


def test_setup_guide_matches_the_block(env: Any) -> None:
    import httpx

    html = httpx.get(env.url + "/docs").text
    assert f"export OPENAI_BASE_URL=&#39;{env.url}/v1&#39;" in html
    assert "export ANTHROPIC_MODEL=&#39;claude-test&#39;" in html
    assert "env_key = &#34;OPENAI_API_KEY&#34;" in html
    assert "A2AGENT_API_KEY" not in html
