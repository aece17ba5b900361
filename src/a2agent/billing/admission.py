"""Admission: may this key's account start one more request now?

Order: suspended → 403; the request's maximum cost over the balance → 403 (a quick check on
the balance read with the key; the binding check is the atomic hold taken with the pending
record, see billing/reservation.py); concurrent requests over the cap → 429; requests or
tokens per minute over the limit (per key and per account) → 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from typing import Any, Awaitable, Callable, TypeVar

from limits import RateLimitItemPerMinute
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from a2agent.api.errors import ApiError
from a2agent.auth.accounts import KeyPrincipal
from a2agent.billing.money import Prices
from a2agent.billing.redis_guard import RedisGuard
from a2agent.billing.reservation import Reservation, insufficient
from a2agent.billing.spend import check_spend_limit
from a2agent.config import Settings
from a2agent.store.faults import DependencyHealth, DependencyUnavailable

log = logging.getLogger("a2agent.admission")
T = TypeVar("T")


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
    """In-process counter of in-flight requests per account (one instance, or the fallback)."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    async def try_acquire(self, account_id: int, cap: int) -> object | None:
        n = self._counts.get(account_id, 0)
        if cap and n >= cap:
            return None
        self._counts[account_id] = n + 1
        return True

    async def release(self, account_id: int, token: object) -> None:
        n = self._counts.get(account_id, 0) - 1
        if n > 0:
            self._counts[account_id] = n
        else:
            self._counts.pop(account_id, None)

    def current(self, account_id: int) -> int:
        return self._counts.get(account_id, 0)


_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local cap = tonumber(ARGV[4])
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class RedisConcurrency:
    """In-flight requests per account shared by every worker and instance: a sorted set of
    request tokens scored by expiry, so a crashed process's slots lapse on their own."""

    def __init__(self, guard: RedisGuard, lease_seconds: float, fallback: ConcurrencyCounter) -> None:
        self.redis = guard.redis
        self.guard = guard
        self.lease = lease_seconds
        self.fallback = fallback
        self._acquire = self.redis.register_script(_ACQUIRE)

    async def try_acquire(self, account_id: int, cap: int) -> object | None:
        token = secrets.token_hex(8)
        now = time.time()
        try:
            ok = await self.guard.run(lambda: self._acquire(
                keys=[f"a2a:inflight:{account_id}"],
                args=[now, now + self.lease, token, cap, int(self.lease) + 60]))
        except DependencyUnavailable:  # Redis down: bound per instance rather than not at all
            local = await self.fallback.try_acquire(account_id, cap)
            return None if local is None else ("local", local)
        return token if ok else None

    async def release(self, account_id: int, token: object) -> None:
        if isinstance(token, tuple):
            await self.fallback.release(account_id, token[1])
            return
        with contextlib.suppress(DependencyUnavailable):  # else the lease expires on its own
            await self.guard.run(lambda: self.redis.zrem(f"a2a:inflight:{account_id}", token))


class Admission:
    def __init__(self, settings: Settings, redis: Any = None, deps: DependencyHealth | None = None,
                 redis_timeout: float = 2.0, hot: Any = None) -> None:
        self.settings = settings
        self.hot = hot  # store.hotpath, for the monthly spend limit
        local = ConcurrencyCounter()
        self.concurrency: ConcurrencyCounter | RedisConcurrency = local
        self.local_window = MovingWindowRateLimiter(storage_from_string("async+memory://"))
        self.window = self.local_window
        self.guard: RedisGuard | None = None
        if redis is not None and settings.redis_url:
            self.guard = RedisGuard(redis, deps or DependencyHealth(), redis_timeout)
            lease = settings.upstream_total_timeout + settings.disconnect_drain_seconds + 60
            self.concurrency = RedisConcurrency(self.guard, lease, local)
            # one connection pool for both, so the guard can drop its stale connections
            storage = storage_from_string("async+" + settings.redis_url, implementation="redispy",
                                          key_prefix="a2a-limits",
                                          connection_pool=redis.connection_pool)
            self.window = MovingWindowRateLimiter(storage)
        self._tasks: set[asyncio.Task[None]] = set()

    def check_account(self, p: KeyPrincipal) -> None:
        if p.suspended:
            raise ApiError(403, "This account is suspended. Contact the administrator of this gateway.",
                           code="account_suspended", err_type="permission_error")

    def check_balance(self, p: KeyPrincipal, prices: Prices, res: Reservation, cap_name: str) -> None:
        """The balance read with the key covers the request's hold (a model priced at zero
        needs none). Holds of other requests are counted by the atomic check at the hold."""
        if res.amount > 0 and res.amount > p.balance_micro:
            raise insufficient(prices, res, p.balance_micro, cap_name)

    def check_funded(self, p: KeyPrincipal, prices: Prices) -> None:
        """For uncharged calls on a priced model (count_tokens): the balance is positive."""
        if (prices.input or prices.output) and p.balance_micro <= 0:
            raise ApiError(403, "Insufficient balance: top up your account (Billing page, or redeem a "
                                "code) and retry.", code="insufficient_balance", err_type="permission_error")

    async def admit(self, p: KeyPrincipal) -> Callable[[], None]:
        """Raises ApiError; on success returns the release function for the concurrency slot."""
        self.check_account(p)
        if p.spend_limit_micro is not None and self.hot is not None:
            await check_spend_limit(self.hot, p.account_id, p.spend_limit_micro)
        cap = p.max_concurrency if p.max_concurrency is not None else self.settings.account_max_concurrency
        token = await self.concurrency.try_acquire(p.account_id, cap)
        if token is None:
            raise ApiError(429, f"Too many concurrent requests for this account (limit {cap}). "
                                "Retry when one finishes.", code="concurrency_limit",
                           headers={"retry-after": "1"})
        try:
            await self._rate_limits(p)
        except BaseException:
            await self.concurrency.release(p.account_id, token)
            raise
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                task = asyncio.get_running_loop().create_task(self.concurrency.release(p.account_id, token))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

        return release

    async def _limiter(self, call: Callable[[MovingWindowRateLimiter], Awaitable[T]]) -> T:
        """``call`` on the shared (Redis) limiter; on the per-instance one while Redis is down."""
        if self.guard is None:
            return await call(self.local_window)
        try:
            return await self.guard.run(lambda: call(self.window))
        except DependencyUnavailable:
            return await call(self.local_window)

    async def _hit(self, item: Any, *ids: str, cost: int = 1, test: bool = False) -> bool:
        if test:
            return await self._limiter(lambda w: w.test(item, *ids))
        return await self._limiter(lambda w: w.hit(item, *ids, cost=cost))

    async def _stats(self, item: Any, *ids: str) -> float:
        stats = await self._limiter(lambda w: w.get_window_stats(item, *ids))
        return stats.reset_time - time.time()

    async def _trio(self, kind: str, limit: int, scope: str, ident: int) -> dict[str, str]:
        """x-ratelimit-{limit,remaining,reset}-{kind} for the tighter of the two scopes."""
        item = RateLimitItemPerMinute(limit)
        name = "rpm" if kind == "requests" else "tpm"
        stats = await self._limiter(lambda w: w.get_window_stats(item, name, scope, str(ident)))
        reset = max(math.ceil(stats.reset_time - time.time()), 0)
        return {f"x-ratelimit-limit-{kind}": str(limit),
                f"x-ratelimit-remaining-{kind}": str(max(stats.remaining, 0)),
                f"x-ratelimit-reset-{kind}": f"{reset}s"}

    async def _rate_limits(self, p: KeyPrincipal) -> None:
        rpm = p.rpm_limit if p.rpm_limit is not None else self.settings.default_rpm
        tpm = p.tpm_limit if p.tpm_limit is not None else self.settings.default_tpm
        if rpm:
            item = RateLimitItemPerMinute(rpm)
            for scope, ident in (("account", p.account_id), ("key", p.key_id)):
                if not await self._hit(item, "rpm", scope, str(ident)):
                    err = _limit_error(f"{rpm} requests per minute per {scope}", rpm,
                                       await self._stats(item, "rpm", scope, str(ident)), "requests")
                    if tpm:
                        err.headers.update(await self._trio("tokens", tpm, scope, ident))
                    raise err
        if tpm:
            item = RateLimitItemPerMinute(tpm)
            for scope, ident in (("account", p.account_id), ("key", p.key_id)):
                if not await self._hit(item, "tpm", scope, str(ident), test=True):
                    err = _limit_error(f"{tpm} tokens per minute per {scope}", tpm,
                                       await self._stats(item, "tpm", scope, str(ident)), "tokens")
                    if rpm:
                        err.headers.update(await self._trio("requests", rpm, scope, ident))
                    raise err

    async def limit_headers(self, p: KeyPrincipal) -> dict[str, str]:
        """x-ratelimit-* for a successful response, when limits apply: the tighter scope of each."""
        out: dict[str, str] = {}
        rpm = p.rpm_limit if p.rpm_limit is not None else self.settings.default_rpm
        tpm = p.tpm_limit if p.tpm_limit is not None else self.settings.default_tpm
        for kind, limit in (("requests", rpm), ("tokens", tpm)):
            if not limit:
                continue
            try:
                trios = [await self._trio(kind, limit, scope, ident)
                         for scope, ident in (("account", p.account_id), ("key", p.key_id))]
            except Exception:  # noqa: BLE001 - headers are advice; never fail a request for them
                continue
            out.update(min(trios, key=lambda t: int(t[f"x-ratelimit-remaining-{kind}"])))
        return out

    async def record_tokens(self, p: KeyPrincipal, tokens: int) -> None:
        tpm = p.tpm_limit if p.tpm_limit is not None else self.settings.default_tpm
        if not tpm or tokens <= 0:
            return
        item = RateLimitItemPerMinute(tpm)
        for scope, ident in (("account", p.account_id), ("key", p.key_id)):
            await self._hit(item, "tpm", scope, str(ident), cost=min(tokens, tpm))
