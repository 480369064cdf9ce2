"""The ingest memory budget: bounded bytes in flight, first come first served, no leaks."""

from __future__ import annotations

import asyncio

import pytest

from mparticle_klaviyo.server.admission import ByteBudget
from mparticle_klaviyo.server.errors import AdmissionTimeoutError


async def hold(budget: ByteBudget, size: int, release: asyncio.Event, order: list[int], name: int) -> None:
    async with budget.reserve(size, timeout_s=5):
        order.append(name)
        await release.wait()


def test_requests_that_fit_run_together_and_the_rest_wait_in_arrival_order() -> None:
    async def scenario() -> list[int]:
        budget = ByteBudget(100)
        order: list[int] = []
        gates = [asyncio.Event() for _ in range(4)]
        tasks = [asyncio.create_task(hold(budget, 40, gates[n], order, n)) for n in range(4)]
        await asyncio.sleep(0.01)
        assert (order, budget.in_use, budget.waiting, budget.holders) == ([0, 1], 80, 2, 2)
        gates[1].set()
        await asyncio.sleep(0.01)
        assert (order, budget.in_use) == ([0, 1, 2], 80)
        for gate in gates:
            gate.set()
        await asyncio.gather(*tasks)
        assert (budget.in_use, budget.waiting, budget.holders) == (0, 0, 0)
        return order

    assert asyncio.run(scenario()) == [0, 1, 2, 3]


def test_a_small_request_does_not_overtake_a_large_one_waiting_before_it() -> None:
    async def scenario() -> list[int]:
        budget = ByteBudget(100)
        order: list[int] = []
        first, large, small = asyncio.Event(), asyncio.Event(), asyncio.Event()
        tasks = [asyncio.create_task(hold(budget, 60, first, order, 0))]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(hold(budget, 90, large, order, 1)))
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(hold(budget, 10, small, order, 2)))
        await asyncio.sleep(0.01)
        assert order == [0]  # 10 bytes would fit, but the 90 came first
        first.set()
        large.set()
        small.set()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_a_request_larger_than_the_budget_runs_alone() -> None:
    async def scenario() -> int:
        budget = ByteBudget(100)
        async with budget.reserve(10_000, timeout_s=1):
            return budget.in_use

    assert asyncio.run(scenario()) == 100


def test_a_waiter_that_times_out_leaves_the_queue_and_the_next_one_goes() -> None:
    async def scenario() -> None:
        budget = ByteBudget(100)
        release = asyncio.Event()
        order: list[int] = []
        holder = asyncio.create_task(hold(budget, 100, release, order, 0))
        await asyncio.sleep(0)
        with pytest.raises(AdmissionTimeoutError):
            async with budget.reserve(50, timeout_s=0.05):
                pass
        assert budget.waiting == 0
        release.set()
        await holder
        async with budget.reserve(100, timeout_s=0.05):
            assert budget.in_use == 100
        assert budget.in_use == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_gives_back_nothing_it_did_not_get() -> None:
    async def scenario() -> None:
        budget = ByteBudget(100)
        release = asyncio.Event()
        holder = asyncio.create_task(hold(budget, 100, release, [], 0))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(hold(budget, 50, asyncio.Event(), [], 1))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        release.set()
        await holder
        assert (budget.in_use, budget.waiting, budget.holders) == (0, 0, 0)

    asyncio.run(scenario())


def test_a_hold_grows_ahead_of_requests_still_waiting_to_start() -> None:
    async def scenario() -> list[str]:
        budget = ByteBudget(100)
        order: list[str] = []
        release = asyncio.Event()

        async def grower() -> None:
            async with budget.reserve(40, timeout_s=5) as hold:
                await asyncio.sleep(0.02)  # a newcomer queues meanwhile
                await hold.grow_to(80, timeout_s=5)
                order.append("grown")
                await release.wait()

        async def newcomer() -> None:
            async with budget.reserve(50, timeout_s=5):
                order.append("newcomer")

        blocker = asyncio.create_task(hold(budget, 30, release, [], 9))
        await asyncio.sleep(0)
        tasks = [asyncio.create_task(grower()), asyncio.create_task(newcomer())]
        await asyncio.sleep(0.05)
        assert order == [] and budget.waiting == 2  # the grower needs 40 more, only 30 are free
        release.set()
        await asyncio.gather(blocker, *tasks)
        assert budget.in_use == 0
        return order

    assert asyncio.run(scenario()) == ["grown", "newcomer"]


def test_a_hold_never_grows_past_the_capacity() -> None:
    async def scenario() -> int:
        budget = ByteBudget(100)
        async with budget.reserve(10, timeout_s=1) as hold:
            await hold.grow_to(10_000, timeout_s=1)
            return hold.size

    assert asyncio.run(scenario()) == 100
