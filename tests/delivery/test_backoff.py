from __future__ import annotations

import random

from mparticle_klaviyo.delivery.backoff import Backoff


def test_delays_stay_within_zero_and_the_capped_exponential() -> None:
    backoff = Backoff(base_s=0.5, cap_s=10.0, rng=random.Random(1))
    for attempt in range(12):
        ceiling = min(10.0, 0.5 * 2**attempt)
        assert all(0.0 <= backoff.delay(attempt) <= ceiling for _ in range(200))


def test_the_same_seed_gives_the_same_delays() -> None:
    first = Backoff(rng=random.Random(7))
    second = Backoff(rng=random.Random(7))
    assert [first.delay(n) for n in range(8)] == [second.delay(n) for n in range(8)]


def test_full_jitter_spreads_delays_over_the_whole_interval() -> None:
    backoff = Backoff(base_s=1.0, cap_s=100.0, rng=random.Random(3))
    delays = [backoff.delay(3) for _ in range(2000)]
    assert min(delays) < 0.5
    assert max(delays) > 7.5
    assert 3.6 < sum(delays) / len(delays) < 4.4


def test_a_huge_attempt_number_is_capped_without_overflow() -> None:
    backoff = Backoff(base_s=0.5, cap_s=30.0, rng=random.Random(0))
    assert backoff.ceiling(10_000) == 30.0
    assert 0.0 <= backoff.delay(10_000) <= 30.0
