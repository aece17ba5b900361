"""Accounts and API keys: creation, listing, deletion, and the per-request key lookup."""

from __future__ import annotations

import asyncio
import builtins
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update

from a2agent.auth.controls import PERIODS, KeyControls
from a2agent.auth.keys import KeyHasher, display_parts, generate_key, looks_like_key
from a2agent.auth.names import readable_name
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


def validate_key_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Column values for ``update_key``; ValueError with a readable reason for bad input."""
    allowed = {"name", "disabled", "spend_cap_micro", "spend_cap_period", "allowed_models",
               "expires_at"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"unknown key setting(s): {', '.join(sorted(unknown))}")
    values = dict(changes)
    if "name" in values:
        name = str(values["name"] or "").strip()[:120]
        if not name:
            raise ValueError("a key needs a name")
        values["name"] = name
    if "spend_cap_micro" in values:
        cap = values["spend_cap_micro"]
        if cap is not None and int(cap) <= 0:
            raise ValueError("a spend cap must be more than $0 (or none)")
        if cap is None:
            values["spend_cap_period"] = None
    period = values.get("spend_cap_period")
    if period is not None and period not in PERIODS:
        raise ValueError(f"the cap period is one of: {', '.join(PERIODS)}")
    if "allowed_models" in values:
        models = values["allowed_models"]
        cleaned = sorted({str(m).strip() for m in models or [] if str(m).strip()})
        values["allowed_models"] = json.dumps(cleaned) if cleaned else None
    return values


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
    controls: KeyControls = KeyControls()


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
                names = await s.scalars(select(ApiKey.name).where(ApiKey.account_id == account_id))
                label = readable_name(set(names.all()))
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

    async def update_key(self, key_id: int, *, account_id: int | None = None,
                         **changes: Any) -> ApiKey:
        """Rename / disable / cap / allow-list / expire a key (see auth/controls.py).

        ``changes`` holds only what changes: name, disabled, spend_cap_micro, spend_cap_period,
        allowed_models (a list, or None for every model), expires_at. ``account_id`` scopes the
        change to one tenant (console). Read fresh per request, it holds everywhere at once.
        """
        values = validate_key_changes(changes)
        q = select(ApiKey).where(ApiKey.id == key_id, ApiKey.deleted_at.is_(None))
        if account_id is not None:
            q = q.where(ApiKey.account_id == account_id)
        async with self.db.write() as s:
            key = await s.scalar(q)
            if key is None:
                raise NotFound(f"no API key with id {key_id}")
            for name, value in values.items():
                setattr(key, name, value)
            if key.spend_cap_micro is not None and key.spend_cap_period is None:
                key.spend_cap_period = "total"
            await s.flush()
            return key

    async def deleted_key_owner(self, presented: str) -> tuple[int, int] | None:
        """(key id, account id) when ``presented`` is a key that was deleted (for the request
        log of its account); None otherwise. Off the hot path: only after a 401."""
        if not looks_like_key(presented):
            return None
        digest = self.hasher.digest(presented)
        async with self.db.read() as s:
            row = (await s.execute(select(ApiKey.id, ApiKey.account_id).where(
                ApiKey.digest == digest, ApiKey.deleted_at.is_not(None)))).first()
        return (int(row[0]), int(row[1])) if row is not None else None

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
            controls=KeyControls.from_row(*row[11:17]),
        )
