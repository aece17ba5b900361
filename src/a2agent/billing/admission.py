"""Admission: may this key's account start one more request now?

Order: suspended → 403; balance ≤ 0 → 403; concurrent requests over the cap → 429; requests
or tokens per minute over the limit (per key and per account) → 429. The concurrency cap
bounds overspend: the balance can go below zero only by what the admitted in-flight
requests cost.
"""

from __future__ import annotations

import math
import time
from typing import Callable

from limits import RateLimitItemPerMinute
from limits.storage import storage_from_string
from limits.aio.strategies import MovingWindowRateLimiter

from a2agent.api.errors import ApiError
from a2agent.auth.accounts import KeyPrincipal
from a2agent.config import Settings


def _limit_error(what: str, limit: int, reset_in: float, kind: str) -> ApiError:
    retry = max(math.ceil(reset_in), 1)
    headers = {
        "retry-after": str(retry),
        f"x-ratelimit-limit-{kind}": str(limit),
        f"x-ratelimit-remaining-{kind}": "0",
        f"x-ratelimit-reset-{kind}": f"{retry}s",
    }
    return ApiError(429, f"Rate limit exceeded: {what}. Retry after {retry} s.",
                    code="rate_limit_exceeded", err_type=None, headers=headers)


class ConcurrencyCounter:
    """In-process counter of in-flight requests per account."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    async def try_acquire(self, account_id: int, cap: int) -> bool:
        n = self._counts.get(account_id, 0)
        if cap and n >= cap:
            return False
        self._counts[account_id] = n + 1
        return True

    def release(self, account_id: int) -> None:
        n = self._counts.get(account_id, 0) - 1
        if n > 0:
            self._counts[account_id] = n
        else:
            self._counts.pop(account_id, None)

    def current(self, account_id: int) -> int:
        return self._counts.get(account_id, 0)


class Admission:
    def __init__(self, settings: Settings, concurrency: ConcurrencyCounter | None = None,
                 storage_uri: str | None = None) -> None:
        self.settings = settings
        self.concurrency = concurrency or ConcurrencyCounter()
        self.storage = storage_from_string(storage_uri or "async+memory://")
        self.window = MovingWindowRateLimiter(self.storage)

    def check_account(self, p: KeyPrincipal) -> None:
        if p.suspended:
            raise ApiError(403, "This account is suspended. Contact the administrator of this gateway.",
                           code="account_suspended", err_type="permission_error")
        if p.balance_micro <= 0:
            raise ApiError(403, "Insufficient balance: top up your account (Billing page, or redeem a "
                                "code) and retry.", code="insufficient_balance", err_type="permission_error")

    async def admit(self, p: KeyPrincipal) -> Callable[[], None]:
        """Raises ApiError; on success returns the release function for the concurrency slot."""
        self.check_account(p)
        cap = p.max_concurrency if p.max_concurrency is not None else self.settings.account_max_concurrency
        if not await self.concurrency.try_acquire(p.account_id, cap):
            raise ApiError(429, f"Too many concurrent requests for this account (limit {cap}). "
                                "Retry when one finishes.", code="concurrency_limit",
                           headers={"retry-after": "1"})
        try:
            await self._rate_limits(p)
        except BaseException:
            self.concurrency.release(p.account_id)
            raise
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.concurrency.release(p.account_id)

        return release

    async def _rate_limits(self, p: KeyPrincipal) -> None:
        rpm = p.rpm_limit if p.rpm_limit is not None else self.settings.default_rpm
        tpm = p.tpm_limit if p.tpm_limit is not None else self.settings.default_tpm
        if rpm:
            item = RateLimitItemPerMinute(rpm)
            for scope, ident in (("account", p.account_id), ("key", p.key_id)):
                if not await self.window.hit(item, "rpm", scope, str(ident)):
                    stats = await self.window.get_window_stats(item, "rpm", scope, str(ident))
                    raise _limit_error(f"{rpm} requests per minute per {scope}", rpm,
                                       stats.reset_time - time.time(), "requests")
        if tpm:
            item = RateLimitItemPerMinute(tpm)
            for scope, ident in (("account", p.account_id), ("key", p.key_id)):
                if not await self.window.test(item, "tpm", scope, str(ident)):
                    stats = await self.window.get_window_stats(item, "tpm", scope, str(ident))
                    raise _limit_error(f"{tpm} tokens per minute per {scope}", tpm,
                                       stats.reset_time - time.time(), "tokens")

    async def record_tokens(self, p: KeyPrincipal, tokens: int) -> None:
        tpm = p.tpm_limit if p.tpm_limit is not None else self.settings.default_tpm
        if not tpm or tokens <= 0:
            return
        item = RateLimitItemPerMinute(tpm)
        for scope, ident in (("account", p.account_id), ("key", p.key_id)):
            await self.window.hit(item, "tpm", scope, str(ident), cost=min(tokens, tpm))
