"""Per-profile ordering across retries and restarts, graceful drain, and redrive after a fix."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from mparticle_klaviyo.delivery.backoff import Backoff
from mparticle_klaviyo.delivery.dispatch_options import DispatchOptions
from mparticle_klaviyo.jobs.plan import unique_id_of
from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig
from mparticle_klaviyo.store.base import DeadFilter, JobState
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.service.e2e_helpers import (
    FAST_LIMITS,
    RecordingEmulator,
    custom_event,
    options,
    run_async,
    user_batch,
    wait_until,
)
from tests.service.rig import DeliveryRig

SEED = 2  # Backoff(1.0, 1.0, Random(2)) waits 0.956 s after the first failure: time for later jobs to arrive
SLOW_RETRY = options(backoff_base_s=1.0, backoff_cap_s=1.0)


def _first_delay() -> float:
    return Backoff(1.0, 1.0, random.Random(SEED)).delay(0)


async def _failed_once(rig: DeliveryRig) -> None:
    async def failed() -> bool:
        return any(job.attempts >= 1 for job in await rig.failing())

    await wait_until(failed, 5.0, "the first job to fail")


def _order(emulator: RecordingEmulator) -> list[str]:
    return emulator.unique_ids()


def test_a_failing_job_holds_back_later_jobs_of_its_profile_but_not_other_profiles(tmp_path: Path) -> None:
    assert _first_delay() > 0.5, "premise: the failed job waits long enough for the later jobs to be claimed"

    async def scenario() -> None:
        async with DeliveryRig(
            tmp_path,
            faults=[{"status": 503, "count": 1}],
            batches=[user_batch("ada", [custom_event("ada-1")])],
            options=SLOW_RETRY,
            rng=random.Random(SEED),
        ) as rig:
            await _failed_once(rig)
            await rig.enqueue([user_batch("ada", [custom_event("ada-2")]), user_batch("bob", [custom_event("bob-1")])])
            rig.wake()
            await rig.until_empty()
            await rig.shutdown()
            order = _order(rig.emulator)
            assert order.index("bob-1") < order.index("ada-1"), "another profile is not held back"
            assert order.index("ada-1") < order.index("ada-2"), "ada's later job waited for her failed one"

    run_async(scenario())


def test_a_held_job_is_deferred_without_counting_an_attempt(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(
            tmp_path,
            faults=[{"status": 503}],
            batches=[user_batch("ada", [custom_event("ada-1")])],
            options=options(backoff_base_s=30.0, backoff_cap_s=30.0),
            rng=random.Random(SEED),
        ) as rig:
            await _failed_once(rig)
            await rig.enqueue([user_batch("ada", [custom_event("ada-2")])])
            rig.wake()

            async def held() -> bool:
                return any(unique_id_of(job.key) == "ada-2" for job in await rig.failing())

            await wait_until(held, 5.0, "ada-2 to be held back")
            await rig.shutdown()
            first, second = await rig.failing()
            assert (unique_id_of(first.key), first.attempts) == ("ada-1", 1)
            assert (unique_id_of(second.key), second.attempts, second.throttles) == ("ada-2", 0, 1)
            assert second.last_error is not None and second.last_error.startswith("held")
            assert second.run_at > first.run_at, "due after the job it waits for"
            assert len(rig.emulator.arrivals) == 1, "ada-2 was never sent"

    run_async(scenario())


def test_the_barrier_is_rebuilt_from_the_store_after_a_restart(tmp_path: Path) -> None:
    assert _first_delay() > 0.5

    async def scenario() -> None:
        async with DeliveryRig(
            tmp_path,
            faults=[{"status": 503, "count": 1}],
            batches=[user_batch("ada", [custom_event("ada-1")])],
            options=SLOW_RETRY,
            rng=random.Random(SEED),
        ) as rig:
            await _failed_once(rig)
            await rig.shutdown()
            [failed] = await rig.failing()
            # A later job of the same profile arrives while the service is down; it is due at once.
            await rig.enqueue([user_batch("ada", [custom_event("ada-2")])])
            after = rig.deliver(SLOW_RETRY)
            await wait_until(_true_when(lambda: after.dispatcher.barrier.blocked() != {}), 2.0, "the rebuild")
            assert after.dispatcher.barrier.blocked() == {"email:ada@example.com": failed.id}
            await rig.until_empty()
            await rig.shutdown()
            assert _order(rig.emulator) == ["ada-1", "ada-2"]

    run_async(scenario())


@pytest.mark.parametrize(
    ("lease_s", "restarted"),
    [
        (0.05, options()),  # the dead process's lease runs out before the restart
        (3600.0, options(sole_owner=True)),  # unexpired, but the sole owner releases it at start
    ],
    ids=["expired-lease", "sole-owner"],
)
def test_a_failed_job_left_leased_by_a_crashed_process_still_blocks_its_profile(
    tmp_path: Path, lease_s: float, restarted: DispatchOptions
) -> None:
    async def scenario() -> None:
        async with DeliveryRig(
            tmp_path,
            faults=[{"status": 503}],
            batches=[user_batch("ada", [custom_event("ada-1")])],
            options=options(backoff_base_s=0.2, backoff_cap_s=0.2),
        ) as rig:
            await _failed_once(rig)
            await rig.shutdown()
            rig.emulator.emulator.faults.clear()
            [failed] = await rig.failing()
            await asyncio.sleep(max(0.0, failed.run_at - time.time()) + 0.01)
            # The retry was claimed by a process that then died.
            [leased] = await rig.store.claim(rig.conn.name, 1, lease_s, time.time())
            assert leased.id == failed.id
            await rig.enqueue([user_batch("ada", [custom_event("ada-2")])])
            await asyncio.sleep(0.1)
            rig.emulator.add_fault({"status": 503, "count": 1})  # whatever is sent first after the restart fails
            rig.deliver(restarted)
            await rig.until_empty(timeout_s=10.0)
            await rig.shutdown()
            assert _order(rig.emulator) == ["ada-1", "ada-2"]

    run_async(scenario())


def test_a_profiles_jobs_that_failed_together_are_retried_together(tmp_path: Path) -> None:
    async def scenario() -> None:
        # 300 jobs of one busy profile travel in one bulk request, which fails once.
        async with DeliveryRig(
            tmp_path,
            faults=[{"status": 503, "count": 1}],
            server=True,
            batches=[user_batch("hot", [custom_event(f"m{n}")]) for n in range(300)],
            rng=random.Random(SEED),
        ) as rig:
            await rig.until_empty(timeout_s=15)
            await rig.shutdown()
            bulk = [a for a in rig.emulator.arrivals if a.path == "/api/event-bulk-create-jobs"]
            assert bulk[0].status == 503 and bulk[0].events == 300
            assert len(bulk) <= 30, f"not one request per job: {[a.events for a in bulk]}"
            assert _order(rig.emulator) == [f"m{n}" for n in range(300)], "retried in their original order"

    run_async(scenario())


def test_a_new_job_of_a_profile_waits_for_all_of_its_failed_jobs(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(
            tmp_path,
            faults=[{"status": 503, "count": 1}],
            server=True,
            batches=[user_batch("ada", [custom_event(f"old-{n}")]) for n in range(5)],
            options=options(backoff_base_s=0.3, backoff_cap_s=0.3),
            rng=random.Random(SEED),
        ) as rig:
            await _failed_once(rig)
            await rig.enqueue([user_batch("ada", [custom_event("new")])])
            rig.wake()
            await rig.until_empty()
            await rig.shutdown()
            assert _order(rig.emulator) == [f"old-{n}" for n in range(5)] + ["new"]

    run_async(scenario())


def test_draining_releases_the_leases_of_sends_that_did_not_finish(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(
            tmp_path,
            faults=[{"delay_ms": 1500}],
            batches=[user_batch(f"u{n}", [custom_event(f"m{n}")]) for n in range(4)],
        ) as rig:
            emulator = rig.emulator
            await wait_until(_true_when(lambda: emulator.emulator.state.requests >= 4), 5.0, "four sends in flight")
            started = time.monotonic()
            await rig.shutdown(drain_s=0.2)
            assert time.monotonic() - started < 1.0, "the drain does not wait for the slow answers"
            counts = {count.state: count.count for count in await rig.store.counts()}
            assert counts == {JobState.READY: 4}
            jobs = await rig.store.claim(rig.conn.name, 10, 30.0, time.time())
            assert [(job.attempts, job.throttles) for job in jobs] == [(0, 0)] * 4, "a release counts nothing"

    run_async(scenario())


def test_draining_lets_sends_that_finish_in_time_settle(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(
            tmp_path,
            faults=[{"delay_ms": 300}],
            batches=[user_batch(f"u{n}", [custom_event(f"m{n}")]) for n in range(4)],
        ) as rig:
            emulator = rig.emulator
            await wait_until(_true_when(lambda: emulator.emulator.state.requests >= 4), 5.0, "four sends in flight")
            await rig.shutdown(drain_s=5.0)
            assert await rig.store.counts() == []
            assert sorted(emulator.unique_ids()) == [f"m{n}" for n in range(4)]

    run_async(scenario())


def test_dead_letters_redriven_after_a_fix_are_delivered(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = EmulatorConfig(company_ids=frozenset({"OTHER1"}), rate_limits=dict(FAST_LIMITS))
        batches = [user_batch(f"u{n}", [custom_event(f"m{n}")]) for n in range(3)]
        async with DeliveryRig(tmp_path, emulator=config, batches=batches) as rig:
            await rig.until_empty()
            assert {job.dead_reason for job in await rig.dead()} == {"http_400"}
            assert rig.emulator.unique_ids() == []
            # The fix: Klaviyo now knows the account. Redrive from a second store, as `dlq redrive` does.
            config.company_ids = frozenset({"DEMO01"})
            operator = SqliteJobStore(rig.store_path)
            assert operator.redrive(DeadFilter(connection=rig.conn.name, reason="http_400"), time.time()) == 3
            operator.close()
            await rig.until_empty()
            await rig.shutdown()
            assert await rig.dead() == []
            assert sorted(rig.emulator.unique_ids()) == ["m0", "m1", "m2"]

    run_async(scenario())


def _true_when(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return condition()

    return check
