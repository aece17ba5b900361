"""The service container: one per process (or per test), no module-level state."""

from __future__ import annotations

import os
import socket

from a2agent.auth.accounts import Accounts
from a2agent.auth.keys import KeyHasher
from a2agent.billing.ledger import Ledger
from a2agent.billing.payments import Payments
from a2agent.config import Settings
from a2agent.routing.catalog import Catalog
from a2agent.store.db import Database
from a2agent.store.hotpath import make_hotpath


class Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
        )
        self.hasher = KeyHasher(settings.secret_key)
        self.hot = make_hotpath(settings.database_url, settings.db_pool_size)
        self.accounts = Accounts(self.db, self.hasher, self.hot)
        self.catalog = Catalog(self.db)
        self.ledger = Ledger(self.db, self.hasher, self.hot)
        # card top-ups exist only where Stripe is configured
        self.payments = Payments(settings, self.db) if settings.payments_enabled else None
        self.instance_id = f"{socket.gethostname()}:{settings.port}:{os.getpid()}"
        self.redis = None
        if settings.redis_url:
            import redis.asyncio as aioredis

            self.redis = aioredis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)

    async def close(self) -> None:
        if self.payments is not None:
            await self.payments.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.hot.close()
        await self.db.dispose()
