from __future__ import annotations

import asyncio

from mparticle_klaviyo.delivery.clock import FakeClock, MonotonicClock
from tests.delivery.helpers import run


def test_fake_clock_sleep_advances_virtual_time() -> None:
    clock = FakeClock(start=10.0)
    run(clock.sleep(2.5))
    assert clock.now() == 12.5


def test_fake_clock_advance_moves_time_forward_only() -> None:
    clock = FakeClock(start=10.0)
    clock.advance(1.0)
    clock.advance(-5.0)
    assert clock.now() == 11.0


def test_concurrent_fake_sleeps_end_together_instead_of_adding_up() -> None:
    clock = FakeClock(start=0.0)

    async def three() -> None:
        await asyncio.gather(clock.sleep(1.0), clock.sleep(1.0), clock.sleep(1.0))

    run(three())
    assert clock.now() == 1.0


def test_a_tiny_fake_sleep_still_makes_progress_at_a_large_time() -> None:
    clock = FakeClock(start=1e9)
    run(clock.sleep(1e-12))
    assert clock.now() > 1e9


def test_monotonic_clock_really_sleeps() -> None:
    clock = MonotonicClock()
    start = clock.now()
    run(clock.sleep(0.02))
    assert clock.now() - start >= 0.02
