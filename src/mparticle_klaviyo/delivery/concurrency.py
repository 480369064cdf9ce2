"""AIMD adaptive concurrency: a semaphore whose size follows Klaviyo's back-pressure.

The limiter bounds the *rate*; this bounds *requests in flight*, which protects Klaviyo and us
when latency rises (Little's law: needed concurrency = rate x latency). Rules, after Vector's
adaptive request concurrency: start small; +1 after a window of successes (as many as the current
limit) while every slot was busy; x0.9 on back-pressure (429, 5xx, timeouts); floor 1, ceiling
from config. A decrease happens at most once per generation of permits: responses to requests
that were already in flight when the limit was cut say nothing about the new limit, and counting
each of them would collapse the limit after a single burst of 429s.
"""

from __future__ import annotations

import asyncio
import collections
import math
from typing import Literal

import msgspec

Signal = Literal["success", "backpressure", "neutral"]


class Permit(msgspec.Struct, frozen=True):
    """A granted slot; ``generation`` is the limit generation it was granted under."""

    generation: int


class AdaptiveConcurrency:
    """A resizable semaphore driven by AIMD: acquire a ``Permit``, release it with a ``Signal``."""

    def __init__(
        self,
        *,
        initial: int = 4,
        ceiling: int = 64,
        floor: int = 1,
        decrease_factor: float = 0.9,
    ) -> None:
        if not 1 <= floor <= initial <= ceiling:
            raise ValueError(f"need 1 <= floor <= initial <= ceiling, got {floor}/{initial}/{ceiling}")
        if not 0.0 < decrease_factor < 1.0:
            raise ValueError(f"decrease_factor must be in (0, 1), got {decrease_factor}")
        self.ceiling = ceiling
        self.floor = floor
        self._factor = decrease_factor
        # Kept as a float so repeated x0.9 cuts compound instead of rounding to nothing.
        self._size = float(initial)
        self._in_flight = 0
        self._generation = 0
        self._successes = 0
        self._waiters: collections.deque[asyncio.Future[Permit]] = collections.deque()

    @property
    def limit(self) -> int:
        """Current number of slots."""
        return max(self.floor, math.floor(self._size))

    @property
    def in_flight(self) -> int:
        """Slots currently held."""
        return self._in_flight

    @property
    def waiting(self) -> int:
        """Callers queued for a slot."""
        return len(self._waiters)

    async def acquire(self) -> Permit:
        """Wait (FIFO) for a free slot."""
        if self._in_flight < self.limit and not self._waiters:
            self._in_flight += 1
            return Permit(self._generation)
        waiter: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise

    def release(self, permit: Permit, signal: Signal = "neutral") -> None:
        """Free a slot and adapt the limit to what its request experienced."""
        saturated = self._in_flight >= self.limit or bool(self._waiters)
        self._in_flight -= 1
        if signal == "success" and saturated:
            self._grow()
        elif signal == "backpressure" and permit.generation == self._generation:
            self._shrink()
        self._wake()

    def _grow(self) -> None:
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self._size = min(float(self.ceiling), self._size + 1.0)

    def _shrink(self) -> None:
        self._successes = 0
        self._generation += 1
        self._size = max(float(self.floor), self._size * self._factor)

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(Permit(self._generation))

    def _abandon(self, waiter: asyncio.Future[Permit]) -> None:
        """Undo a cancelled wait, returning the slot if it had already been granted."""
        if waiter in self._waiters:
            self._waiters.remove(waiter)
        elif waiter.done() and not waiter.cancelled():
            self._in_flight -= 1
            self._wake()
