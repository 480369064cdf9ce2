"""The dispatcher's answers to trouble: 429s and the gate, retries with backoff, attempt and age limits."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path

import pytest

from mparticle_klaviyo.delivery.backoff import Backoff
from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig
from tests.service.e2e_helpers import (
    FAST,
    FAST_LIMITS,
    RecordingEmulator,
    custom_event,
    gate_violations,
    options,
    run_async,
    user_batch,
    wait_until,
)
from tests.service.rig import DeliveryRig

EVENTS = "/client/events"


def slow_emulator_config(per_second: int) -> EmulatorConfig:
    """An emulator whose /client/events limit is far below what the client is told."""
    return EmulatorConfig(rate_limits={**FAST_LIMITS, "POST /client/events": (per_second, 10_000)})


def batches(count: int, prefix: str = "m") -> list[dict[str, object]]:
    return [user_batch(f"u{n}", [custom_event(f"{prefix}{n}")]) for n in range(count)]


def test_a_429_puts_the_job_back_as_a_throttle_not_an_attempt(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(
            tmp_path, faults=[{"status": 429}], batches=batches(1), options=options(default_retry_after_s=30.0)
        ) as rig:
            await _wait_for_arrivals(rig.emulator, 1)
            await asyncio.sleep(0.2)
            await rig.shutdown()
            [job] = await rig.failing()
            assert (job.attempts, job.throttles) == (0, 1)
            assert job.last_error == "throttled (429)"
            assert job.run_at > time.time() + 25, "due when the gate reopens"

    run_async(scenario())


def test_throttled_jobs_are_delivered_even_with_a_single_attempt_allowed(tmp_path: Path) -> None:
    async def scenario() -> None:
        # One attempt only: a throttle that counted as an attempt would dead-letter its job.
        async with DeliveryRig(
            tmp_path, emulator=slow_emulator_config(per_second=8), batches=batches(20), options=options(max_attempts=1)
        ) as rig:
            await rig.until_empty(timeout_s=20)
            await rig.shutdown()
            assert 429 in rig.emulator.statuses()
            assert await rig.dead() == []
            assert sorted(rig.emulator.unique_ids()) == sorted(f"m{n}" for n in range(20))

    run_async(scenario())


def test_nothing_is_sent_while_a_429s_retry_after_keeps_the_gate_closed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(tmp_path, emulator=slow_emulator_config(per_second=8), batches=batches(24)) as rig:
            await rig.until_empty(timeout_s=20)
            await rig.shutdown()
            throttled = [a for a in rig.emulator.arrivals if a.status == 429]
            assert throttled and all(a.retry_after is not None and a.retry_after >= 1 for a in throttled)
            assert gate_violations(rig.emulator.arrivals, FAST.default_retry_after_s) == []
            assert len(rig.emulator.unique_ids()) == 24

    run_async(scenario())


def test_a_429_without_retry_after_closes_the_gate_for_the_default_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(
            tmp_path,
            faults=[{"status": 429, "count": 3, "path": EVENTS}],
            batches=batches(10),
            options=options(default_retry_after_s=0.4),
        ) as rig:
            await rig.until_empty()
            await rig.shutdown()
            first_429 = next(a for a in rig.emulator.arrivals if a.status == 429)
            later = [a for a in rig.emulator.arrivals if first_429.at + 0.1 < a.at]
            assert later and min(a.at for a in later) >= first_429.at + 0.4 - 0.01
            assert gate_violations(rig.emulator.arrivals, 0.4) == []
            assert len(rig.emulator.unique_ids()) == 10

    run_async(scenario())


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_retryable_server_error_is_retried_until_delivered(tmp_path: Path, status: int) -> None:
    async def scenario() -> None:
        async with DeliveryRig(tmp_path, faults=[{"status": status, "count": 3}], batches=batches(1)) as rig:
            await rig.until_empty()
            await rig.shutdown()
            assert rig.emulator.statuses() == [status, status, status, 202]
            assert rig.emulator.unique_ids() == ["m0"]
            assert await rig.dead() == []

    run_async(scenario())


def test_retries_wait_an_exponential_backoff_with_full_jitter(tmp_path: Path) -> None:
    async def scenario() -> None:
        knobs = options(backoff_base_s=0.2, backoff_cap_s=5.0)
        # The same seed drives the dispatcher's jitter and our expectation of it.
        expected = Backoff(0.2, 5.0, random.Random(11))
        delays = [expected.delay(attempt) for attempt in range(3)]
        async with DeliveryRig(
            tmp_path,
            faults=[{"status": 503, "count": 3}],
            batches=batches(1),
            options=knobs,
            rng=random.Random(11),
        ) as rig:
            await rig.until_empty()
            await rig.shutdown()
            times = [a.at for a in rig.emulator.arrivals]
            gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
            assert len(gaps) == 3
            for gap, delay, attempt in zip(gaps, delays, range(3), strict=True):
                assert delay <= 0.2 * 2**attempt
                assert delay - 0.01 <= gap <= delay + 0.5, (gaps, delays)

    run_async(scenario())


def test_a_retried_job_is_back_in_the_queue_with_its_attempt_and_the_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        # Random(2) draws 0.956 first: the retry is due in 28.7 s, long after this test looks.
        async with DeliveryRig(
            tmp_path,
            faults=[{"status": 503}],
            batches=batches(1),
            options=options(backoff_base_s=30.0, backoff_cap_s=30.0),
            rng=random.Random(2),
        ) as rig:
            await _wait_for_arrivals(rig.emulator, 1)
            await asyncio.sleep(0.2)
            await rig.shutdown()
            [job] = await rig.failing()
            assert (job.attempts, job.throttles) == (1, 0)
            assert job.last_error is not None and job.last_error.startswith("http_503")
            assert len(rig.emulator.arrivals) == 1, "the backoff keeps the job waiting"

    run_async(scenario())


def test_connection_resets_are_retried_until_delivered(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(tmp_path, faults=[{"reset": True, "count": 3}], batches=batches(2)) as rig:
            await rig.until_empty()
            await rig.shutdown()
            assert rig.emulator.statuses().count(0) == 3
            assert sorted(rig.emulator.unique_ids()) == ["m0", "m1"]

    run_async(scenario())


def test_a_response_slower_than_the_client_timeout_is_retried_and_recorded_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        # Answered (and recorded) after 0.6 s, when the client gave up at 0.3 s.
        async with DeliveryRig(
            tmp_path, faults=[{"delay_ms": 600, "count": 2}], batches=batches(1), timeout_s=0.3
        ) as rig:
            await rig.until_empty()
            await rig.shutdown()
            assert rig.emulator.unique_ids() == ["m0"]
            assert rig.emulator.emulator.state.requests >= 2
            assert await rig.dead() == []

    run_async(scenario())


def test_a_job_is_dead_lettered_as_retries_exhausted_with_its_cause_after_max_attempts(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(
            tmp_path, faults=[{"status": 503}], batches=batches(1), options=options(max_attempts=3)
        ) as rig:
            await rig.until_empty()
            await rig.shutdown()
            [dead] = await rig.dead()
            assert (dead.dead_reason, dead.attempts) == ("retries_exhausted:http_503", 3)
            assert dead.last_error is not None and dead.last_error.startswith("http_503")
            assert rig.emulator.statuses() == [503, 503, 503]

    run_async(scenario())


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [(500, "max_age:http_500", "http_500"), (429, "max_age:throttled", "throttled (429) past max_age_s")],
)
def test_a_job_older_than_max_age_is_dead_lettered_at_its_next_failure_or_429(
    tmp_path: Path, status: int, reason: str, error: str
) -> None:
    async def scenario() -> None:
        async with DeliveryRig(tmp_path, faults=[{"status": status}], batches=batches(1), dispatcher=False) as rig:
            await asyncio.sleep(0.3)
            rig.deliver(options(max_age_s=0.2))
            await rig.until_empty()
            await rig.shutdown()
            [dead] = await rig.dead()
            assert dead.dead_reason == reason
            assert (dead.last_error or "").startswith(error)
            assert rig.emulator.statuses() == [status]

    run_async(scenario())


async def _wait_for_arrivals(emulator: RecordingEmulator, count: int) -> None:
    for _ in range(500):
        if len(emulator.arrivals) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} requests reached the emulator")


def test_the_wall_clock_is_injected_so_a_job_can_be_aged_past_max_age(tmp_path: Path) -> None:
    async def scenario() -> None:
        eight_days_on = time.time() + 8 * 86400  # past the 7-day default max_age_s
        async with DeliveryRig(
            tmp_path,
            faults=[{"status": 503, "count": 1}],
            batches=[user_batch("aged", [custom_event("m-aged")])],
            wall_clock=lambda: eight_days_on,
        ) as rig:

            async def buried() -> bool:
                return len(await rig.dead()) == 1

            await wait_until(buried, 10, "the aged job's dead letter")
            await rig.shutdown(drain_s=1)
            assert [job.dead_reason for job in await rig.dead()] == ["max_age:http_503"]

    run_async(scenario())
