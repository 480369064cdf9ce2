"""Two-window GCRA limiter per (account, endpoint), safe against Klaviyo's fixed windows.

Klaviyo counts requests in fixed 1 s (burst) and 60 s (steady) windows whose alignment we do not
know, so the only safe promise is a *sliding*-window one: no interval of length W, wherever it
starts, may hold more than the limit. A GCRA bucket with rate r and capacity b admits at most
``b + floor(r * W)`` requests in any closed interval of length W (b at once, then one per 1/r). The
"obvious" bucket for a limit L per W (rate L/W, capacity L) therefore lets ``2L`` through, which
is the pitfall this module exists to avoid.

Why ``b + floor(r * W)``: each admission moves the theoretical arrival time on by 1/r, and a
request is admitted no earlier than ``(b - 1) / r`` before it, so the n-th admission after a
first one at t comes at ``t + (n - b + 1) / r`` or later. Within W of t that leaves
``n - b + 1 <= r * W``, i.e. at most ``b + floor(r * W)`` admissions in all.
"""

from __future__ import annotations

import asyncio
import math

import msgspec

from mparticle_klaviyo.delivery.clock import Clock
from mparticle_klaviyo.klaviyo.limits import RateLimit

BURST_WINDOW_S = 1.0
STEADY_WINDOW_S = 60.0
# How far past the window the first request that would overflow it is pushed, as a share of the
# window, when that beats pushing it a whole interval past (tiny budgets; see ``_bucket``).
MIN_GAP = 0.05


class BucketParams(msgspec.Struct, frozen=True, kw_only=True):
    """One GCRA bucket: ``capacity`` requests at once, then ``rate`` per second."""

    rate: float
    capacity: int

    def max_in_window(self, window_s: float) -> int:
        """Upper bound on admissions in any closed interval of ``window_s`` seconds."""
        # The epsilon only ever raises the bound: (B - b) / W * W may round to just under B - b.
        return self.capacity + math.floor(self.rate * window_s + 1e-9)


class LimiterParams(msgspec.Struct, frozen=True, kw_only=True):
    """The two buckets of one limiter; a request is admitted only when both admit it."""

    burst: BucketParams
    steady: BucketParams

    def max_in_window(self, window_s: float) -> int:
        """Upper bound on admissions of the combined limiter in any interval of ``window_s``."""
        return min(self.burst.max_in_window(window_s), self.steady.max_in_window(window_s))


def window_budgets(limit: RateLimit, safety: float = 1.0) -> tuple[int, int]:
    """Return the whole numbers of requests allowed per 1 s and per 60 s after ``safety``."""
    if not 0.0 < safety <= 1.0:
        raise ValueError(f"safety must be in (0, 1], got {safety}")
    if limit.burst_per_second < 1 or limit.steady_per_minute < 1:
        raise ValueError(f"{limit}: each limit must be at least 1 request per window")
    return _budget(limit.burst_per_second, safety), _budget(limit.steady_per_minute, safety)


def _budget(limit: int, safety: float) -> int:
    # The epsilon keeps e.g. 350 * 0.9 from flooring to 314 through float error. A budget never
    # drops below one request: 1 x 0.9 would otherwise send nothing, and 1 is within the limit.
    return max(1, math.floor(limit * safety + 1e-9))


def derive_params(
    limit: RateLimit,
    *,
    safety: float = 1.0,
    burst_capacity_fraction: float = 0.15,
    steady_capacity_fraction: float = 0.02,
) -> LimiterParams:
    """Derive both buckets from Klaviyo's limits so that no sliding window can overflow.

    Invariant, with the budgets ``B1`` and ``B2`` of ``window_budgets`` (``floor(limit * safety)``,
    at least 1):

    * burst bucket:  ``capacity + floor(rate * 1 s)  <= B1`` (it alone guards every 1 s interval);
    * steady bucket: ``capacity + floor(rate * 60 s) <= B2`` (it alone guards every 60 s interval);
    * so the combined limiter admits at most ``min(b + floor(r * W))`` over its buckets in any
      interval of length W: at most B1 in any sliding 1 s and at most B2 in any sliding 60 s.

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
    """Split ``budget`` into a capacity (at least 1) and a rate, so that ``b + floor(r W) <= budget``.

    After the capacity is spent, ``k = budget - capacity + 1`` more intervals must not fit in the
    window, so ``k / r`` must be longer than W. The rate is the higher of two that both do that:

    * ``(k - 1) / W``: k intervals last one whole interval longer than W (a small share of W for
      large budgets, and a margin for jitter in send times);
    * ``k / (W * (1 + MIN_GAP))``: k intervals last 5 % of W longer than W, the higher rate for
      tiny budgets, where one interval is a large share of W (a budget of 1 would get rate 0).
    """
    # capacity_fraction < 1 keeps the capacity below the budget whenever the budget is 2 or more.
    capacity = max(1, int(budget * capacity_fraction))
    spacings = budget - capacity + 1
    rate = max((spacings - 1) / window_s, spacings / (window_s * (1.0 + MIN_GAP)))
    return BucketParams(rate=rate, capacity=capacity)


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
