"""`a2agent serve`: migrate, first-start admin, optional local model, uvicorn."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from typing import Any

import uvicorn

from a2agent.config import Settings
from a2agent.observability.logs import configure_logging
from a2agent.services import Services
from a2agent.store.db import upgrade_sync

ADMIN_EMAIL = "admin@a2agent.local"


async def first_start(settings: Settings) -> str | None:
    """Create the first admin on an empty database; returns its generated password."""
    services = Services(settings)
    try:
        if await services.accounts.count_admins():
            return None
        password = secrets.token_urlsafe(12)
        await services.accounts.create(ADMIN_EMAIL, password, admin=True)
        return password
    finally:
        await services.close()


def banner(settings: Settings, admin_password: str | None) -> str:
    base = settings.base_url
    lines = [
        "",
        "  A2Agent gateway",
        f"  Console:            {base}/",
        f"  OpenAI base URL:    {base}/v1",
        f"  Anthropic base URL: {base}",
        f"  Database:           {settings.database_url.split('@')[-1]}",
    ]
    if admin_password:
        lines += [
            "",
            "  First start: an administrator account was created. Sign in once with",
            f"    email:    {ADMIN_EMAIL}",
            f"    password: {admin_password}",
            "  and change the password (Account page). It is not shown again.",
        ]
    return "\n".join(lines) + "\n"


def _export_env(settings: Settings, config_file: str | None) -> None:
    """Worker processes rebuild settings from the environment."""
    if config_file:
        os.environ["A2AGENT_CONFIG"] = str(config_file)
    os.environ["A2AGENT_HOST"] = settings.host
    os.environ["A2AGENT_PORT"] = str(settings.port)
    os.environ["A2AGENT_DATA_DIR"] = str(settings.data_dir)
    os.environ["A2AGENT_LOCAL_MODEL"] = "true" if settings.local_model else "false"


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def run_server(settings: Settings, config_file: str | None = None) -> None:
    configure_logging(settings.log_level)
    upgrade_sync(settings.database_url)
    admin_password = asyncio.run(first_start(settings))
    local = None
    if settings.local_model:
        from a2agent.providers.local_model import LocalModel, LocalModelError

        local = LocalModel(settings)
        try:
            local.start_and_register()
        except LocalModelError as exc:
            sys.stderr.write(f"warning: the local model could not start ({exc}); serving without it\n")
            local = None
    sys.stdout.write(banner(settings, admin_password))
    sys.stdout.flush()
    _export_env(settings, config_file)
    common: dict[str, Any] = dict(
        host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False,
        log_config=None, loop="uvloop", http="httptools",
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
        **proxy_options(settings))
    # uvicorn drains on SIGTERM/SIGINT, then re-raises the signal: end cleanly instead, so the
    # local model is stopped below and the exit status says the shutdown was orderly.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        if settings.workers > 1:
            uvicorn.run("a2agent.app:create_app_from_env", factory=True, workers=settings.workers, **common)
        else:
            from a2agent.app import create_app

            uvicorn.run(create_app(settings), **common)
    finally:
        if local is not None:
            local.stop()


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's X-Forwarded-For handling: believed only from A2AGENT_TRUSTED_PROXIES (default
    none), so a client cannot choose the address its throttles and records see."""
    trusted = ",".join(p.strip() for p in settings.trusted_proxies.split(",") if p.strip())
    if not trusted:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": trusted}
