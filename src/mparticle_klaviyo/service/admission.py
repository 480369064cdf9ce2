"""Ingest admission by memory: requests reserve what their bodies may cost before they are read.

A count of requests bounds memory badly (32 slots of 12.8 MB bulk bodies, decoded, are over a
gigabyte); bytes bound it directly. Each authenticated request reserves its announced size (the
endpoint's limit when not announced, or when compressed) times the measured cost of decoding
and planning it; requests that do not fit wait, in arrival order, with their bodies unread, and
give up after ``timeout_s`` (the sender retries).

Invariants: the reserved total never exceeds ``capacity`` except for one request larger than the
whole budget, which runs alone; waiters are admitted in arrival order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mparticle_klaviyo.service.errors import AdmissionTimeoutError

# Peak memory of handling a body, per body byte: the body, msgspec's decoded batches, the
# normalised copies and the planned jobs' payloads (bench/ingest_memory.py measures it).
PROCESSING_FACTOR = 4


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
    async def reserve(self, size: int, timeout_s: float) -> AsyncIterator[None]:
        """Hold ``size`` bytes (at most the capacity) for the duration of the block."""
        size = min(size, self.capacity)
        await self._acquire(size, timeout_s)
        self.holders += 1
        try:
            yield
        finally:
            self.holders -= 1
            self.in_use -= size
            self._admit_waiters()

    async def _acquire(self, size: int, timeout_s: float) -> None:
        if not self._waiters and self.in_use + size <= self.capacity:
            self.in_use += size
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, waiter)
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
