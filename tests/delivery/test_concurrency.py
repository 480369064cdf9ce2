from __future__ import annotations

import asyncio

import pytest

from mparticle_klaviyo.delivery.clock import FakeClock
from mparticle_klaviyo.delivery.concurrency import AdaptiveConcurrency
from tests.delivery.helpers import run


def test_the_limit_starts_at_the_initial_size() -> None:
    assert AdaptiveConcurrency(initial=4).limit == 4


def test_an_acquire_beyond_the_limit_waits_for_a_release() -> None:
    async def scenario() -> tuple[bool, bool]:
        aimd = AdaptiveConcurrency(initial=2)
        first, _ = await aimd.acquire(), await aimd.acquire()
        third = asyncio.create_task(aimd.acquire())
        await asyncio.sleep(0)
        blocked = not third.done()
        aimd.release(first)
        await asyncio.sleep(0)
        return blocked, third.done()

    assert run(scenario()) == (True, True)


def test_back_pressure_cuts_the_limit_by_ten_percent() -> None:
    async def scenario() -> int:
        aimd = AdaptiveConcurrency(initial=10, ceiling=20)
        permit = await aimd.acquire()
        aimd.release(permit, "backpressure")
        return aimd.limit

    assert run(scenario()) == 9


def test_back_pressure_never_cuts_below_the_floor() -> None:
    async def scenario() -> int:
        aimd = AdaptiveConcurrency(initial=2)
        for _ in range(50):
            aimd.release(await aimd.acquire(), "backpressure")
        return aimd.limit

    assert run(scenario()) == 1


def test_back_pressure_from_one_generation_of_requests_cuts_only_once() -> None:
    async def scenario() -> int:
        aimd = AdaptiveConcurrency(initial=10, ceiling=20)
        permits = [await aimd.acquire() for _ in range(10)]
        for permit in permits:
            aimd.release(permit, "backpressure")
        return aimd.limit

    assert run(scenario()) == 9


def test_a_window_of_saturated_successes_adds_one_slot() -> None:
    async def scenario() -> list[int]:
        aimd = AdaptiveConcurrency(initial=4, ceiling=20)
        held = [await aimd.acquire() for _ in range(4)]
        limits = []
        for _ in range(4 + 5):  # one window at limit 4, then one at limit 5
            # Every release happens with all slots held: the service is saturated.
            aimd.release(held.pop(0), "success")
            while aimd.in_flight < aimd.limit:
                held.append(await aimd.acquire())
            limits.append(aimd.limit)
        return limits

    assert run(scenario()) == [4, 4, 4, 5, 5, 5, 5, 5, 6]


def test_successes_without_saturation_do_not_grow_the_limit() -> None:
    async def scenario() -> int:
        aimd = AdaptiveConcurrency(initial=4, ceiling=20)
        for _ in range(100):
            aimd.release(await aimd.acquire(), "success")
        return aimd.limit

    assert run(scenario()) == 4


def test_the_limit_never_grows_past_the_ceiling() -> None:
    async def scenario() -> int:
        aimd = AdaptiveConcurrency(initial=1, ceiling=3)
        held = await aimd.acquire()
        for _ in range(200):
            waiter = asyncio.create_task(aimd.acquire())
            await asyncio.sleep(0)
            aimd.release(held, "success")
            held = await waiter
        return aimd.limit

    assert run(scenario()) == 3


def test_a_cancelled_waiter_does_not_leak_a_slot() -> None:
    async def scenario() -> int:
        aimd = AdaptiveConcurrency(initial=1)
        held = await aimd.acquire()
        waiter = asyncio.create_task(aimd.acquire())
        await asyncio.sleep(0)
        aimd.release(held)  # grants the slot to the waiter ...
        waiter.cancel()  # ... which is cancelled before it runs
        await asyncio.gather(waiter, return_exceptions=True)
        return aimd.in_flight

    assert run(scenario()) == 0


def test_invalid_bounds_are_rejected() -> None:
    with pytest.raises(ValueError):
        AdaptiveConcurrency(initial=10, ceiling=5)


def test_simulated_service_keeps_the_limit_near_its_capacity() -> None:
    """A service that answers 503 when more than 10 requests are in flight; 40 eager clients."""
    clock = FakeClock()
    aimd = AdaptiveConcurrency(initial=4, ceiling=64)
    served = {"in_flight": 0}
    history: list[int] = []

    async def client() -> None:
        for _ in range(150):
            permit = await aimd.acquire()
            served["in_flight"] += 1
            overloaded = served["in_flight"] > 10
            await clock.sleep(0.05)
            served["in_flight"] -= 1
            aimd.release(permit, "backpressure" if overloaded else "success")
            history.append(aimd.limit)

    async def many() -> None:
        await asyncio.gather(*(client() for _ in range(40)))

    run(many())
    settled = history[len(history) // 4 :]
    assert max(history) >= 10  # it grew from 4 to the service's capacity
    assert min(settled) >= 7 and max(settled) <= 12  # and oscillates around it, far below 64
