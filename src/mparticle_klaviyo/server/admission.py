"""Ingest admission by memory: requests reserve what their bodies may cost before they are read.

A count of requests bounds memory badly (32 slots of 12.8 MB bulk bodies, decoded, are over a
gigabyte); bytes bound it directly. Each authenticated request reserves its announced size (the
endpoint's limit when not announced, or when compressed) times the measured cost of decoding
and planning it; requests that do not fit wait, in arrival order, with their bodies unread, and
give up after ``timeout_s`` (the sender retries).

A request's true cost is known only once its batches are decoded: each event becomes a job that
stores its own copy of the user's part of the batch, so a batch of many events with large user
attributes costs many times its size. ``Hold.grow_to`` tops the reservation up to that estimate
before the jobs are built (``jobs.planned_size``), ahead of requests still waiting to start.

Invariants: the reserved total never exceeds ``capacity``, a request being capped at the whole
budget; waiters are admitted in arrival order, growing holds first.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mparticle_klaviyo.server.errors import AdmissionTimeoutError

# Peak memory of handling a body, per body byte: the body, msgspec's decoded batches, the
# normalised copies and the planned jobs' payloads (bench/ingest_memory.py measures it).
PROCESSING_FACTOR = 4
# Memory of planned jobs per byte of their payloads: the payloads dominate (bench/ingest_memory.py
# --shape user: a 12.3 MB post held ~178 MB, its jobs' payloads ~170 MB).
JOB_MEMORY_FACTOR = 1


class ByteBudget:
    """At most ``capacity`` bytes reserved at once; first come, first served."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.in_use = 0
        self.holders = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def waiting(self) -> int:
        """How many requests wait for room."""
        return len(self._waiters)

    @asynccontextmanager
    async def reserve(self, size: int, timeout_s: float) -> AsyncIterator[Hold]:
        """Hold ``size`` bytes (at most the capacity) for the duration of the block."""
        hold = Hold(self, min(size, self.capacity))
        await self._acquire(hold.size, timeout_s)
        self.holders += 1
        try:
            yield hold
        finally:
            self.holders -= 1
            self.in_use -= hold.size
            self._admit_waiters()

    async def _acquire(self, size: int, timeout_s: float, *, first: bool = False) -> None:
        if (first or not self._waiters) and self.in_use + size <= self.capacity:
            self.in_use += size
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
        # A request growing its hold already got in: it goes before those still outside.
        if first:
            self._waiters.appendleft(entry)
        else:
            self._waiters.append(entry)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout_s)
        except BaseException as error:  # timed out, or cancelled (shutdown): leave the queue
            if waiter.done():  # admitted just as we gave up: give the bytes back
                self.in_use -= size
            else:
                self._waiters.remove(entry)
            self._admit_waiters()
            if isinstance(error, TimeoutError):
                raise AdmissionTimeoutError(f"ingest memory budget full for {timeout_s:g} s") from None
            raise

    def _admit_waiters(self) -> None:
        while self._waiters and self.in_use + self._waiters[0][0] <= self.capacity:
            size, waiter = self._waiters.popleft()
            self.in_use += size
            waiter.set_result(None)


class Hold:
    """One request's reservation; it may grow once the request knows what it really costs."""

    def __init__(self, budget: ByteBudget, size: int) -> None:
        self._budget = budget
        self.size = size

    async def grow_to(self, size: int, timeout_s: float) -> None:
        """Hold ``size`` bytes in all (at most the capacity), waiting ahead of new arrivals."""
        extra = min(size, self._budget.capacity) - self.size
        if extra > 0:
            await self._budget._acquire(extra, timeout_s, first=True)
            self.size += extra
