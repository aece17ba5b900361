"""Accounts and API keys: creation, listing, deletion, and the per-request key lookup."""

from __future__ import annotations

import asyncio
import builtins
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from a2agent.auth.keys import KeyHasher, display_parts, generate_key, looks_like_key
from a2agent.auth.passwords import hash_password
from a2agent.store.db import Database, affected
from a2agent.store.models import Account, ApiKey, utcnow


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    local, _, domain = value.partition("@")
    if not local or "." not in domain or " " in value or len(value) > 320:
        raise ValueError(f"not an email address: {email!r}")
    return value


@dataclass(frozen=True)
class KeyPrincipal:
    """What one lookup of a key tells the data plane (always read fresh from the database)."""

    key_id: int
    key_name: str
    account_id: int
    suspended: bool
    balance_micro: int
    rpm_limit: int | None
    tpm_limit: int | None
    max_concurrency: int | None
    catalog_version: int
    spend_limit_micro: int | None = None  # monthly, see billing.spend


class Accounts:
    def __init__(self, db: Database, hasher: KeyHasher, hot: Any) -> None:
        self.db = db
        self.hasher = hasher
        self.hot = hot  # store.hotpath: the per-request key lookup on the driver

    # ---- accounts -------------------------------------------------------------------------
    async def create(
        self, email: str, password: str | None, *, admin: bool = False
    ) -> Account:
        email = normalize_email(email)
        # argon2 takes tens of milliseconds: off the event loop
        password_hash = await asyncio.to_thread(hash_password, password) if password else None
        async with self.db.write() as s:
            exists = await s.scalar(select(Account.id).where(Account.email == email))
            if exists is not None:
                raise Conflict(f"an account with email {email} already exists")
            account = Account(
                email=email,
                password_hash=password_hash,
                role="admin" if admin else "user",
                suspended=False,
                balance_micro=0,
            )
            s.add(account)
            await s.flush()
            return account

    async def get(self, account_id: int) -> Account:
        async with self.db.read() as s:
            account = await s.get(Account, account_id)
        if account is None:
            raise NotFound(f"no account with id {account_id}")
        return account

    async def by_email(self, email: str) -> Account:
        try:
            email = normalize_email(email)
        except ValueError:
            raise NotFound(f"no account with email {email!r}") from None
        async with self.db.read() as s:
            account = await s.scalar(select(Account).where(Account.email == email))
        if account is None:
            raise NotFound(f"no account with email {email}")
        return account

    async def list(self, search: str | None = None, limit: int = 1000, offset: int = 0) -> list[Account]:
        q = select(Account).order_by(Account.id)
        if search:
            q = q.where(Account.email.contains(search.strip().lower(), autoescape=True))
        async with self.db.read() as s:
            return list((await s.scalars(q.limit(limit).offset(offset))).all())

    async def count_admins(self) -> int:
        async with self.db.read() as s:
            return int(await s.scalar(select(func.count()).where(Account.role == "admin")) or 0)

    async def set_suspended(self, account_id: int, suspended: bool) -> None:
        async with self.db.write() as s:
            result = await s.execute(
                update(Account).where(Account.id == account_id).values(suspended=suspended)
            )
            if affected(result) == 0:
                raise NotFound(f"no account with id {account_id}")

    async def set_password(self, account_id: int, password: str) -> None:
        password_hash = await asyncio.to_thread(hash_password, password)
        async with self.db.write() as s:
            await s.execute(
                update(Account).where(Account.id == account_id).values(password_hash=password_hash)
            )

    async def set_limits(
        self,
        account_id: int,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        concurrency: int | None = None,
    ) -> None:
        values = {
            k: v
            for k, v in (("rpm_limit", rpm), ("tpm_limit", tpm), ("max_concurrency", concurrency))
            if v is not None
        }
        if not values:
            return
        async with self.db.write() as s:
            await s.execute(update(Account).where(Account.id == account_id).values(**values))

    # ---- keys -------------------------------------------------------------------------------
    async def create_key(self, account_id: int, label: str | None = None) -> tuple[ApiKey, str]:
        """Returns (record, full key). The full key is never stored and never shown again."""
        value = generate_key()
        prefix, last4 = display_parts(value)
        label = (label or "").strip()[:120]
        async with self.db.write() as s:
            if await s.get(Account, account_id) is None:
                raise NotFound(f"no account with id {account_id}")
            if not label:
                n = await s.scalar(select(func.count()).where(ApiKey.account_id == account_id))
                label = f"key-{(n or 0) + 1}"
            key = ApiKey(
                account_id=account_id,
                name=label,
                prefix=prefix,
                last4=last4,
                digest=self.hasher.digest(value),
                created_at=utcnow(),
            )
            s.add(key)
            await s.flush()
        return key, value

    async def list_keys(self, account_id: int, *, include_deleted: bool = False) -> builtins.list[ApiKey]:
        q = select(ApiKey).where(ApiKey.account_id == account_id).order_by(ApiKey.id)
        if not include_deleted:
            q = q.where(ApiKey.deleted_at.is_(None))
        async with self.db.read() as s:
            return list((await s.scalars(q)).all())

    async def get_key(self, key_id: int) -> ApiKey:
        async with self.db.read() as s:
            key = await s.get(ApiKey, key_id)
        if key is None or key.deleted_at is not None:
            raise NotFound(f"no API key with id {key_id}")
        return key

    async def delete_key(self, key_id: int, *, account_id: int | None = None) -> None:
        """Soft delete. ``account_id`` scopes the deletion to one tenant (console)."""
        q = update(ApiKey).where(ApiKey.id == key_id, ApiKey.deleted_at.is_(None))
        if account_id is not None:
            q = q.where(ApiKey.account_id == account_id)
        async with self.db.write() as s:
            result = await s.execute(q.values(deleted_at=utcnow()))
            if affected(result) == 0:
                raise NotFound(f"no API key with id {key_id}")

    async def authenticate(self, presented: str) -> KeyPrincipal | None:
        """Look a presented key up by its digest. None for malformed, unknown or deleted keys.

        Deliberately uncached: the row is read on every request, so a deletion or suspension
        committed anywhere holds on the very next request on every worker and instance.
        """
        if not looks_like_key(presented):
            return None
        digest = self.hasher.digest(presented)
        row = await self.hot.lookup_key(digest)
        if row is None or not KeyHasher.same(row[2], digest):
            return None
        return KeyPrincipal(
            key_id=row[0],
            key_name=row[1],
            account_id=row[3],
            suspended=bool(row[4]),
            balance_micro=int(row[5]),
            rpm_limit=row[6],
            tpm_limit=row[7],
            max_concurrency=row[8],
            catalog_version=int(row[9] or 0),
            spend_limit_micro=row[10],
        )
