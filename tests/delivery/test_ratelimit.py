from __future__ import annotations

import asyncio
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mparticle_klaviyo.delivery.clock import FakeClock
from mparticle_klaviyo.delivery.ratelimit import (
    BucketParams,
    LimiterParams,
    RateLimiter,
    derive_params,
    window_budgets,
)
from mparticle_klaviyo.klaviyo.limits import DEFAULT_RATE_LIMITS, RateLimit
from tests.delivery.helpers import max_in_window, run

XL = RateLimit(350, 3500)


def greedy(limiter: RateLimiter, start: float, count: int, extra_wait: float = 0.0) -> list[float]:
    """Admit ``count`` requests as fast as the limiter allows (plus ``extra_wait`` per refusal)."""
    now = start
    admitted = []
    for _ in range(count):
        while (wait := limiter.try_acquire(now)) > 0.0:
            now = max(math.nextafter(now, math.inf), now + wait + extra_wait)
        admitted.append(now)
    return admitted


def test_xl_events_params_keep_every_sliding_window_within_the_limit() -> None:
    params = derive_params(XL)
    assert params.max_in_window(1.0) <= 350
    assert params.max_in_window(60.0) <= 3500 + 1e-9


def test_xl_events_params_are_the_documented_ones() -> None:
    params = derive_params(XL)
    assert params.burst == BucketParams(rate=298.0, capacity=52)
    assert params.steady.capacity == 70
    assert params.steady.rate == pytest.approx(3430 / 60)


def test_every_default_endpoint_limit_derives_safe_params() -> None:
    for limit in DEFAULT_RATE_LIMITS.values():
        params = derive_params(limit)
        assert params.max_in_window(1.0) <= limit.burst_per_second + 1e-9
        assert params.max_in_window(60.0) <= limit.steady_per_minute + 1e-9


def test_naive_parametrisation_lets_almost_twice_the_burst_limit_through() -> None:
    naive = LimiterParams(burst=BucketParams(rate=350.0, capacity=350), steady=BucketParams(rate=1e6, capacity=10**6))
    limiter = RateLimiter(XL, FakeClock(), params=naive)
    admitted = greedy(limiter, 1000.0, 2000)
    # capacity + rate x 1 s: 2L - 1 in a half-open second, 2L in a closed one (float rounding).
    assert max_in_window(admitted, 1.0) >= 2 * 350 - 1


def test_derived_parametrisation_stops_a_greedy_client_at_the_burst_limit() -> None:
    limiter = RateLimiter(XL, FakeClock())
    admitted = greedy(limiter, 1000.0, 2000)
    assert max_in_window(admitted, 1.0) <= 350


def test_safety_scales_both_window_budgets_down() -> None:
    assert window_budgets(XL, 0.9) == (315, 3150)
    params = derive_params(XL, safety=0.9)
    assert params.max_in_window(1.0) <= 315
    assert params.max_in_window(60.0) <= 3150 + 1e-9


@pytest.mark.parametrize("limit", [RateLimit(0, 15), RateLimit(1, 0), RateLimit(-1, 60)])
def test_a_limit_below_one_request_per_window_is_rejected(limit: RateLimit) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        derive_params(limit)


def test_safety_never_scales_a_budget_below_one_request() -> None:
    assert window_budgets(RateLimit(1, 15), 0.5) == (1, 7)
    assert window_budgets(RateLimit(1, 1), 0.1) == (1, 1)


def test_a_budget_of_one_request_spaces_requests_just_over_a_window_apart() -> None:
    params = derive_params(RateLimit(1, 1))
    assert params.burst.capacity == params.steady.capacity == 1
    assert 1.0 < 1 / params.burst.rate <= 1.06
    assert 60.0 < 1 / params.steady.rate <= 63.0
    assert (params.max_in_window(1.0), params.max_in_window(60.0)) == (1, 1)


def test_safety_outside_zero_to_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="safety"):
        derive_params(XL, safety=1.5)


def test_a_greedy_sender_uses_at_least_95_percent_of_the_steady_limit_over_five_minutes() -> None:
    limiter = RateLimiter(XL, FakeClock())
    admitted = greedy(limiter, 1000.0, 20_000)
    in_five_minutes = sum(1 for at in admitted if at < 1000.0 + 300.0)
    assert in_five_minutes >= 0.95 * 3500 * 5
    assert max_in_window(admitted, 60.0) <= 3500


def test_try_acquire_returns_zero_when_admitted_and_the_wait_when_not() -> None:
    limiter = RateLimiter(RateLimit(5, 20), FakeClock())
    assert limiter.try_acquire(0.0) == 0.0
    wait = limiter.try_acquire(0.0)
    assert wait > 0.0
    assert limiter.try_acquire(wait) == 0.0


def test_a_refused_request_takes_no_token_from_either_bucket() -> None:
    limiter = RateLimiter(RateLimit(5, 20), FakeClock())
    assert limiter.try_acquire(0.0) == 0.0
    first_wait = limiter.try_acquire(0.0)
    for _ in range(100):
        assert limiter.try_acquire(0.0) == pytest.approx(first_wait)


def test_acquire_sleeps_on_the_clock_and_reports_the_wait() -> None:
    clock = FakeClock(start=0.0)
    limiter = RateLimiter(RateLimit(5, 20), clock)

    async def two() -> tuple[float, float]:
        return await limiter.acquire(), await limiter.acquire()

    first, second = run(two())
    assert first == 0.0
    assert second > 0.0
    assert clock.now() == pytest.approx(second)


def test_concurrent_acquirers_are_admitted_in_arrival_order() -> None:
    clock = FakeClock()
    limiter = RateLimiter(RateLimit(5, 1000), clock)
    order: list[int] = []

    async def one(n: int) -> None:
        await limiter.acquire()
        order.append(n)

    async def many() -> None:
        await asyncio.gather(*(one(n) for n in range(30)))

    run(many())
    assert order == list(range(30))


arrival = st.tuples(
    st.floats(min_value=0.0, max_value=90.0),  # idle gap before the group
    st.integers(min_value=1, max_value=400),  # requests in the group
    st.sampled_from([0.0, 0.0, 1e-4, 0.013, 0.5]),  # extra wait after a refusal (0 = greedy)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    burst=st.integers(min_value=1, max_value=400),
    steady=st.integers(min_value=1, max_value=4000),
    safety=st.floats(min_value=0.5, max_value=1.0),
    burst_fraction=st.floats(min_value=0.0, max_value=0.9),
    steady_fraction=st.floats(min_value=0.0, max_value=0.9),
    groups=st.lists(arrival, min_size=1, max_size=12),
)
def test_no_sliding_window_ever_holds_more_than_the_limit(
    burst: int,
    steady: int,
    safety: float,
    burst_fraction: float,
    steady_fraction: float,
    groups: list[tuple[float, int, float]],
) -> None:
    limit = RateLimit(burst, steady)
    budgets = window_budgets(limit, safety)
    params = derive_params(
        limit, safety=safety, burst_capacity_fraction=burst_fraction, steady_capacity_fraction=steady_fraction
    )
    limiter = RateLimiter(limit, FakeClock(), params=params)
    admitted: list[float] = []
    now = 1000.0
    for gap, count, extra_wait in groups:
        admitted += greedy(limiter, now + gap, count, extra_wait)
        now = admitted[-1]
    assert max_in_window(admitted, 1.0) <= budgets[0]
    assert max_in_window(admitted, 60.0) <= budgets[1]


# Klaviyo's rate limit tiers, and small odd limits that a configuration may give.
TIERS = {
    "XS": RateLimit(1, 15),
    "S": RateLimit(3, 60),
    "M": RateLimit(10, 150),
    "L": RateLimit(75, 700),
    "XL": RateLimit(350, 3500),
    "1/s,1/min": RateLimit(1, 1),
    "1/s,2/min": RateLimit(1, 2),
    "2/s,3/min": RateLimit(2, 3),
}


def saturate(limiter: RateLimiter, clock: FakeClock, seconds: float) -> list[float]:
    """Ask for a request again the moment the limiter allows, for ``seconds`` of virtual time."""
    end = clock.now() + seconds
    admitted: list[float] = []
    while clock.now() < end:
        wait = limiter.try_acquire()
        if wait > 0.0:
            clock.advance(wait)
        else:
            admitted.append(clock.now())
    return admitted


def steady_per_minute(admitted: list[float]) -> float:
    """Requests per minute after the first minute, when the opening burst is spent."""
    later = [at for at in admitted if at >= admitted[0] + 60.0]
    return (len(later) - 1) / (later[-1] - later[0]) * 60.0


@pytest.mark.parametrize("limit", list(TIERS.values()), ids=list(TIERS))
def test_every_tier_at_full_demand_keeps_both_sliding_windows_within_its_limit(limit: RateLimit) -> None:
    clock = FakeClock()
    admitted = saturate(RateLimiter(limit, clock), clock, 6 * 60.0)
    assert max_in_window(admitted, 1.0) <= limit.burst_per_second
    assert max_in_window(admitted, 60.0) <= limit.steady_per_minute


@pytest.mark.parametrize("limit", list(TIERS.values()), ids=list(TIERS))
def test_every_tier_at_full_demand_sends_at_least_90_percent_of_its_per_minute_limit(limit: RateLimit) -> None:
    clock = FakeClock()
    admitted = saturate(RateLimiter(limit, clock), clock, 6 * 60.0)
    assert steady_per_minute(admitted) >= 0.9 * limit.steady_per_minute
