"""Settlement that survives the database going away.

A request that was answered is settled at once; when the database is unavailable the
settlement waits in a bounded in-memory queue and is retried (every 0.1 s at first, then
at most every second) until the database is back. Settling is idempotent per request id
(the record's ``settled_at IS NULL`` guard), so a retry after a write whose outcome was
unknown — the connection lost after the COMMIT — never charges twice. What the queue
cannot hold, or what a crash loses, stays a pending record and is settled by the recovery
path (``Ledger.recover_pending``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from a2agent.billing.ledger import Ledger, Outcome, PendingRequest
from a2agent.store.faults import DependencyUnavailable

log = logging.getLogger("a2agent.settlement")

FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 1.0
RETRY_BATCH = 256
VOID_DELAY_SECONDS = 1.0

Settled = Callable[[PendingRequest, Outcome, "int | None"], None]


@dataclass
class _Item:
    pending: PendingRequest
    outcome: Outcome
    opened: bool  # False: a refusal whose pending write had an unknown outcome


class SettlementQueue:
    def __init__(self, ledger: Ledger, spawn: Callable[[Coroutine[Any, Any, Any], str], Any], *,
                 max_size: int, on_settled: Settled | None = None) -> None:
        self.ledger = ledger
        self._spawn = spawn
        self.max_size = max_size
        self.on_settled = on_settled
        self._items: deque[_Item] = deque()
        self._retrying = 0  # items out of the deque while a retry of them runs
        self._worker: Any = None
        self.open = 0  # this process's pending records not settled yet
        self.dropped = 0  # settlements the full queue left to the recovery path
        self._full_logged = False

    def __len__(self) -> int:
        return len(self._items) + self._retrying

    def opened(self) -> None:
        """A pending record of this process was written."""
        self.open += 1

    async def settle(self, pending: PendingRequest, outcome: Outcome) -> None:
        """Settle now, or queue the settlement while the database is unavailable."""
        await self._attempt(_Item(pending, outcome, True), queue_on_failure=True)

    def void(self, pending: PendingRequest) -> None:
        """The request was refused because its pending record could not be written, but the
        write's outcome is unknown (it may have committed): close such a record at no cost
        once the database answers, so the recovery path never charges a refused request.
        Queued a little later, so a COMMIT still in flight on the server is visible by then."""
        outcome = Outcome(status="error", http_status=503, error_type="database_unavailable")
        self._spawn(self._enqueue_later(_Item(pending, outcome, False)), "settlement-void")

    async def _enqueue_later(self, item: _Item) -> None:
        await asyncio.sleep(VOID_DELAY_SECONDS)
        self._enqueue(item)

    async def _attempt(self, item: _Item, *, queue_on_failure: bool) -> bool:
        """True when the item needs no more work (settled, already settled, or given up)."""
        try:
            cost = await self.ledger.settle(item.pending, item.outcome)
        except DependencyUnavailable:
            if queue_on_failure:
                self._enqueue(item)
            return False
        except Exception:  # a bug, not an outage: retrying will not help
            log.exception("settlement of %s failed; left pending for recovery",
                          item.pending.request_id)
            self._finish(item)
            return True
        self._finish(item)
        if item.opened and self.on_settled is not None:
            self.on_settled(item.pending, item.outcome, cost)
        return True

    def _finish(self, item: _Item) -> None:
        if item.opened:
            self.open = max(self.open - 1, 0)

    def _enqueue(self, item: _Item) -> None:
        if len(self) >= self.max_size and not self._evict_void(item):
            self.dropped += 1
            self._finish(item)
            if not self._full_logged:
                self._full_logged = True
                log.warning("settlement retry queue is full (%d); further settlements are left "
                            "pending for the recovery path", self.max_size)
            return
        self._items.append(item)
        if self._worker is None:
            self._worker = self._spawn(self._retry_loop(), "settlement-retry")

    def _evict_void(self, item: _Item) -> bool:
        """Room for an answered request's settlement, at the cost of a refusal's void."""
        if not item.opened:
            return False
        for queued in self._items:
            if not queued.opened:
                self._items.remove(queued)
                self.dropped += 1
                return True
        return False

    async def _retry_loop(self) -> None:
        delay = FIRST_RETRY_SECONDS
        try:
            while self._items:
                await asyncio.sleep(delay)
                batch = [self._items.popleft() for _ in range(min(len(self._items), RETRY_BATCH))]
                self._retrying = len(batch)
                try:
                    # concurrently: the store's group commit writes them in few transactions
                    done = await asyncio.gather(
                        *(self._attempt(item, queue_on_failure=False) for item in batch))
                finally:
                    self._retrying = 0
                failed = [item for item, ok in zip(batch, done, strict=True) if not ok]
                if failed:
                    self._items.extendleft(reversed(failed))
                    delay = min(delay * 2, MAX_RETRY_SECONDS)
                else:
                    delay = FIRST_RETRY_SECONDS
                    if not self._items:
                        log.info("settlement retry queue drained")
                        self._full_logged = False
        finally:
            self._worker = None
