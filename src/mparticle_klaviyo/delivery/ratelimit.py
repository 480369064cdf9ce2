"""Two-window GCRA limiter per (account, endpoint), safe against Klaviyo's fixed windows.

Klaviyo counts requests in fixed 1 s (burst) and 60 s (steady) windows whose alignment we do not
know, so the only safe promise is a *sliding*-window one: no interval of length W, wherever it
starts, may hold more than the limit. A GCRA bucket with rate r and capacity b admits at most
``b + r * W`` requests in any closed interval of length W (b at once, then one per 1/r). The
"obvious" bucket for a limit L per W (rate L/W, capacity L) therefore lets ``2L - 1`` through, which
is the pitfall this module exists to avoid.
"""

from __future__ import annotations

import asyncio
import math

import msgspec

from mparticle_klaviyo.delivery.clock import Clock
from mparticle_klaviyo.klaviyo.limits import RateLimit

BURST_WINDOW_S = 1.0
STEADY_WINDOW_S = 60.0


class BucketParams(msgspec.Struct, frozen=True, kw_only=True):
    """One GCRA bucket: ``capacity`` requests at once, then ``rate`` per second."""

    rate: float
    capacity: int

    def max_in_window(self, window_s: float) -> float:
        """Upper bound on admissions in any closed interval of ``window_s`` seconds."""
        return self.capacity + self.rate * window_s


class LimiterParams(msgspec.Struct, frozen=True, kw_only=True):
    """The two buckets of one limiter; a request is admitted only when both admit it."""

    burst: BucketParams
    steady: BucketParams

    def max_in_window(self, window_s: float) -> float:
        """Upper bound on admissions of the combined limiter in any interval of ``window_s``."""
        return min(self.burst.max_in_window(window_s), self.steady.max_in_window(window_s))


def window_budgets(limit: RateLimit, safety: float = 1.0) -> tuple[int, int]:
    """Return the whole numbers of requests allowed per 1 s and per 60 s after ``safety``."""
    if not 0.0 < safety <= 1.0:
        raise ValueError(f"safety must be in (0, 1], got {safety}")
    # The epsilon keeps e.g. 350 * 0.9 from flooring to 314 through float error.
    burst = math.floor(limit.burst_per_second * safety + 1e-9)
    steady = math.floor(limit.steady_per_minute * safety + 1e-9)
    if burst < 2 or steady < 2:
        raise ValueError(
            f"{limit} x safety {safety} leaves fewer than 2 requests per window: "
            "a GCRA bucket needs capacity >= 1 plus a positive rate"
        )
    return burst, steady


def derive_params(
    limit: RateLimit,
    *,
    safety: float = 1.0,
    burst_capacity_fraction: float = 0.15,
    steady_capacity_fraction: float = 0.02,
) -> LimiterParams:
    """Derive both buckets from Klaviyo's limits so that no sliding window can overflow.

    Invariant, with ``B1 = floor(burst_per_second * safety)`` and
    ``B2 = floor(steady_per_minute * safety)``:

    * burst bucket:  ``capacity + rate * 1 s  == B1`` (it alone guards every 1 s interval);
    * steady bucket: ``capacity + rate * 60 s == B2`` (it alone guards every 60 s interval);
    * so the combined limiter admits at most ``min(b + r * W)`` over its buckets in any interval
      of length W: at most B1 in any sliding 1 s and at most B2 in any sliding 60 s.

    Capacity is what a burst may spend at once, and it is paid for in rate: the steady bucket
    keeps a small capacity (2 % by default) so the long-run rate, which is the steady bucket's
    rate, stays at 98 % of the steady limit. ``safety`` = 1.0 gives the highest rates that are
    still safe (XL 350/s 3500/m: burst 298/s + 52, steady 57.17/s + 70).
    """
    for name, fraction in (
        ("burst_capacity_fraction", burst_capacity_fraction),
        ("steady_capacity_fraction", steady_capacity_fraction),
    ):
        if not 0.0 <= fraction < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {fraction}")
    burst_budget, steady_budget = window_budgets(limit, safety)
    return LimiterParams(
        burst=_bucket(burst_budget, BURST_WINDOW_S, burst_capacity_fraction),
        steady=_bucket(steady_budget, STEADY_WINDOW_S, steady_capacity_fraction),
    )


def _bucket(budget: int, window_s: float, capacity_fraction: float) -> BucketParams:
    """Split ``budget`` into a capacity (at least 1, leaving a positive rate) and a rate."""
    capacity = min(max(1, int(budget * capacity_fraction)), budget - 1)
    return BucketParams(rate=(budget - capacity) / window_s, capacity=capacity)


class _Gcra:
    """One bucket as a theoretical arrival time (TAT): admit when ``TAT - tolerance <= now``."""

    __slots__ = ("_interval", "_tat", "_tolerance")

    def __init__(self, params: BucketParams) -> None:
        self._interval = 1.0 / params.rate
        self._tolerance = (params.capacity - 1) * self._interval
        self._tat = -math.inf

    def wait(self, now: float) -> float:
        """Seconds until this bucket would admit one request (0.0 when it would now)."""
        return max(0.0, max(self._tat, now) - self._tolerance - now)

    def take(self, now: float) -> None:
        """Record one admission at ``now``."""
        self._tat = max(self._tat, now) + self._interval


class RateLimiter:
    """Two-window GCRA limiter for one (account, endpoint); see ``derive_params``."""

    def __init__(
        self,
        limit: RateLimit,
        clock: Clock,
        *,
        safety: float = 1.0,
        params: LimiterParams | None = None,
    ) -> None:
        self.limit = limit
        self.params = params if params is not None else derive_params(limit, safety=safety)
        self._clock = clock
        self._burst = _Gcra(self.params.burst)
        self._steady = _Gcra(self.params.steady)
        # One waiter at a time sleeps on the buckets; the rest queue FIFO on the lock. Without
        # it every waiter would wake at each free slot and all but one would sleep again.
        self._turn = asyncio.Lock()

    def try_acquire(self, now: float | None = None) -> float:
        """Admit one request and return 0.0, or admit nothing and return the seconds to wait."""
        at = self._clock.now() if now is None else now
        # Both buckets or neither: taking a token from one bucket for a request the other
        # refuses would make the first bucket stricter than its invariant needs.
        wait = max(self._burst.wait(at), self._steady.wait(at))
        if wait > 0.0:
            return wait
        self._burst.take(at)
        self._steady.take(at)
        return 0.0

    async def acquire(self) -> float:
        """Wait (FIFO among callers) until admitted; return the seconds spent waiting."""
        start = self._clock.now()
        async with self._turn:
            while (wait := self.try_acquire()) > 0.0:
                await self._clock.sleep(wait)
        return self._clock.now() - start
