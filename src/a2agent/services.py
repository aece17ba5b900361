"""The service container: one per process (or per test), no module-level state."""

from __future__ import annotations

import os
import socket

from a2agent.auth.accounts import Accounts
from a2agent.auth.keys import KeyHasher
from a2agent.auth.sealing import CredentialBox
from a2agent.billing.ledger import Ledger
from a2agent.billing.payments import Payments
from a2agent.config import Settings
from a2agent.routing.catalog import Catalog
from a2agent.store.db import Database
from a2agent.store.faults import DependencyHealth
from a2agent.store.hotpath import make_hotpath

REDIS_TIMEOUT = 2.0  # seconds; while Redis is down it is not asked at all (admission)


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.deps = DependencyHealth()
        self.db = Database(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            acquire_timeout=settings.db_acquire_timeout,
            statement_timeout=settings.db_statement_timeout,
        )
        self.hasher = KeyHasher(settings.secret_key)
        self.hot = make_hotpath(settings.database_url, settings.db_pool_size,
                                acquire_timeout=settings.db_acquire_timeout,
                                statement_timeout=settings.db_statement_timeout, deps=self.deps)
        self.accounts = Accounts(self.db, self.hasher, self.hot)
        self.catalog = Catalog(self.db, CredentialBox(settings.secret_key))
        self.ledger = Ledger(self.db, self.hasher, self.hot)
        # card top-ups exist only where Stripe is configured
        self.payments = Payments(settings, self.db) if settings.payments_enabled else None
        self.instance_id = f"{socket.gethostname()}:{settings.port}:{os.getpid()}"
        self.redis = None
        if settings.redis_url:
            import redis.asyncio as aioredis

            self.redis = aioredis.from_url(settings.redis_url, socket_timeout=REDIS_TIMEOUT,
                                           socket_connect_timeout=REDIS_TIMEOUT)

    async def close(self) -> None:
        if self.payments is not None:
            await self.payments.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.hot.close()
        await self.db.dispose()
