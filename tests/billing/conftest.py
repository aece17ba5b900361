"""A gateway with card payments on, wired to a scripted Stripe on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from a2agent.billing.verify import verify
from tests.conftest import Env, _env
from tests.support.stripe_fake import SECRET_KEY, WEBHOOK_SECRET, ScriptedStripe
from tests.support.upstream import ScriptedUpstream


class PayEnv:
    def __init__(self, env: Env, stripe: ScriptedStripe) -> None:
        self.env = env
        self.stripe = stripe

    def start(self, account: Any, usd: int = 20) -> str:
        """Start a Checkout Session as the console would; returns the session id."""
        url = self.env.call(self.env.services.payments.start_checkout(
            account.id, account.email, usd * 1_000_000, self.env.url))
        return str(url).rsplit("/", 1)[1]

    def entries(self, account_id: int) -> list[Any]:
        return list(reversed(self.env.call(self.env.services.ledger.entries(account_id,
                                                                           limit=1000))))

    def verify_clean(self) -> None:
        assert self.env.call(verify(self.env.services.db)) == []


def _pay_env(tmp_path: Path, upstream: ScriptedUpstream, db: str | None,
             **overrides: Any) -> Iterator[PayEnv]:
    with ScriptedStripe() as stripe:
        gen = _env(tmp_path, upstream, db, stripe_secret_key=SECRET_KEY,
                   stripe_webhook_secret=WEBHOOK_SECRET, stripe_api_base=stripe.url, **overrides)
        env = next(gen)
        stripe.webhook_url = env.url + "/webhooks/stripe"
        try:
            yield PayEnv(env, stripe)
        finally:
            gen.close()


@pytest.fixture
def pay(tmp_path: Path, upstream: ScriptedUpstream) -> Iterator[PayEnv]:
    """Payments on, SQLite."""
    yield from _pay_env(tmp_path, upstream, None)


@pytest.fixture
def pay_both(tmp_path: Path, upstream: ScriptedUpstream, db_url: str) -> Iterator[PayEnv]:
    """Payments on, once on SQLite and once on PostgreSQL."""
    yield from _pay_env(tmp_path, upstream, db_url)
