"""Injected time: the limiter, gate and backoff read a ``Clock`` so tests never really sleep."""

from __future__ import annotations

import asyncio
import math
import time
from typing import Protocol


class Clock(Protocol):
    """Monotonic seconds and an awaitable sleep."""

    def now(self) -> float:
        """Return monotonic seconds (only differences are meaningful)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for at least ``seconds``."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic`` and ``asyncio.sleep``."""

    def now(self) -> float:
        """Return ``time.monotonic()``."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """Sleep on the running event loop."""
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A virtual clock: ``advance`` moves time by hand, ``sleep`` moves it forward by itself.

    Sleepers that start at the same instant and sleep the same time wake at the same virtual
    instant (the clock moves to ``max(now, start + seconds)``), so concurrent tasks do not add
    their sleeps up. A positive sleep always makes progress, even when ``start + seconds`` rounds
    back to ``start`` in floating point; otherwise a caller polling a tiny wait would spin forever.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self._now = start

    def now(self) -> float:
        """Return the virtual time."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move virtual time forward by ``seconds`` (never backwards)."""
        self._now = _later(self._now, max(0.0, seconds))

    async def sleep(self, seconds: float) -> None:
        """Yield to the loop once, then move virtual time to at least start + ``seconds``."""
        target = _later(self._now, max(0.0, seconds))
        await asyncio.sleep(0)
        self._now = max(self._now, target)


def _later(start: float, seconds: float) -> float:
    """Return ``start + seconds``, strictly greater than ``start`` when ``seconds`` > 0."""
    end = start + seconds
    if seconds > 0 and end <= start:
        return math.nextafter(start, math.inf)
    return end
