"""The dispatcher's answers to trouble: 429s and the gate, retries with backoff, attempt and age limits."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from pathlib import Path

import pytest

from mparticle_klaviyo.delivery.backoff import Backoff
from mparticle_klaviyo.delivery.dispatcher import Dispatcher
from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig
from mparticle_klaviyo.observe.metrics import Metrics
from tests.service.e2e_helpers import (
    FAST,
    FAST_LIMITS,
    Delivery,
    RecordingEmulator,
    connection,
    custom_event,
    dead_jobs,
    enqueue,
    gate_violations,
    open_store,
    options,
    run_async,
    start_recording_emulator,
    user_batch,
    wait_until,
)
from tests.service.e2e_helpers import (
    client_for as e2e_client_for,
)

EVENTS = "/client/events"


def slow_emulator_config(per_second: int) -> EmulatorConfig:
    """An emulator whose /client/events limit is far below what the client is told."""
    return EmulatorConfig(rate_limits={**FAST_LIMITS, "POST /client/events": (per_second, 10_000)})


def batches(count: int, prefix: str = "m") -> list[dict[str, object]]:
    return [user_batch(f"u{n}", [custom_event(f"{prefix}{n}")]) for n in range(count)]


def test_a_429_puts_the_job_back_as_a_throttle_not_an_attempt(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        emulator.add_fault({"status": 429})
        store = open_store(tmp_path / "jobs.sqlite3")
        conn = connection(emulator.url)
        await enqueue(store, conn, batches(1))
        delivery = Delivery(conn, store, options(default_retry_after_s=30.0))
        delivery.start()
        await _wait_for_arrivals(emulator, 1)
        await asyncio.sleep(0.2)
        await delivery.shutdown()
        [job] = await store.failing_jobs(conn.name)
        assert (job.attempts, job.throttles) == (0, 1)
        assert job.last_error == "throttled (429)"
        assert job.run_at > time.time() + 25, "due when the gate reopens"
        await store.close()
        await emulator.close()

    run_async(scenario())


def test_throttled_jobs_are_delivered_even_with_a_single_attempt_allowed(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator(slow_emulator_config(per_second=8))
        store = open_store(tmp_path / "jobs.sqlite3")
        conn = connection(emulator.url)
        await enqueue(store, conn, batches(20))
        # One attempt only: a throttle that counted as an attempt would dead-letter its job.
        delivery = Delivery(conn, store, options(max_attempts=1))
        delivery.start()
        await delivery.until_empty(timeout_s=20)
        await delivery.shutdown()
        assert 429 in emulator.statuses()
        assert await dead_jobs(store) == []
        assert sorted(emulator.unique_ids()) == sorted(f"m{n}" for n in range(20))
        await store.close()
        await emulator.close()

    run_async(scenario())


def test_nothing_is_sent_while_a_429s_retry_after_keeps_the_gate_closed(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator(slow_emulator_config(per_second=8))
        store = open_store(tmp_path / "jobs.sqlite3")
        conn = connection(emulator.url)
        await enqueue(store, conn, batches(24))
        delivery = Delivery(conn, store)
        delivery.start()
        await delivery.until_empty(timeout_s=20)
        await delivery.shutdown()
        throttled = [a for a in emulator.arrivals if a.status == 429]
        assert throttled and all(a.retry_after is not None and a.retry_after >= 1 for a in throttled)
        assert gate_violations(emulator.arrivals, FAST.default_retry_after_s) == []
        assert len(emulator.unique_ids()) == 24
        await store.close()
        await emulator.close()

    run_async(scenario())


def test_a_429_without_retry_after_closes_the_gate_for_the_default_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        emulator.add_fault({"status": 429, "count": 3, "path": EVENTS})
        store = open_store(tmp_path / "jobs.sqlite3")
        conn = connection(emulator.url)
        await enqueue(store, conn, batches(10))
        delivery = Delivery(conn, store, options(default_retry_after_s=0.4))
        delivery.start()
        await delivery.until_empty()
        await delivery.shutdown()
        first_429 = next(a for a in emulator.arrivals if a.status == 429)
        later = [a for a in emulator.arrivals if first_429.at + 0.1 < a.at]
        assert later and min(a.at for a in later) >= first_429.at + 0.4 - 0.01
        assert gate_violations(emulator.arrivals, 0.4) == []
        assert len(emulator.unique_ids()) == 10
        await store.close()
        await emulator.close()

    run_async(scenario())


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_retryable_server_error_is_retried_until_delivered(tmp_path: Path, status: int) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        emulator.add_fault({"status": status, "count": 3})
        store = open_store(tmp_path / "jobs.sqlite3")
        conn = connection(emulator.url)
        await enqueue(store, conn, batches(1))
        delivery = Delivery(conn, store)
        delivery.start()
        await delivery.until_empty()
        await delivery.shutdown()
        assert emulator.statuses() == [status, status, status, 202]
        assert emulator.unique_ids() == ["m0"]
        assert await dead_jobs(store) == []
        await store.close()
        await emulator.close()

    run_async(scenario())


def test_retries_wait_an_exponential_backoff_with_full_jitter(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        emulator.add_fault({"status": 503, "count": 3})
        store = open_store(tmp_path / "jobs.sqlite3")
        conn = connection(emulator.url)
        await enqueue(store, conn, batches(1))
        knobs = options(backoff_base_s=0.2, backoff_cap_s=5.0)
        # The same seed drives the dispatcher's jitter and our expectation of it.
        expected = Backoff(0.2, 5.0, random.Random(11))
        delays = [expected.delay(attempt) for attempt in range(3)]
        delivery = Delivery(conn, store, knobs, rng=random.Random(11))
        delivery.start()
        await delivery.until_empty()
        await delivery.shutdown()
        times = [a.at for a in emulator.arrivals]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        assert len(gaps) == 3
        for gap, delay, attempt in zip(gaps, delays, range(3), strict=True):
            assert delay <= 0.2 * 2**attempt
            assert delay - 0.01 <= gap <= delay + 0.5, (gaps, delays)
        await store.close()
        await emulator.close()

    run_async(scenario())


def test_a_retried_job_is_back_in_the_queue_with_its_attempt_and_the_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        emulator.add_fault({"status": 503})
        store = open_store(tmp_path / "jobs.sqlite3")
        conn = connection(emulator.url)
        await enqueue(store, conn, batches(1))
        # Random(2) draws 0.956 first: the retry is due in 28.7 s, long after this test looks.
        delivery = Delivery(conn, store, options(backoff_base_s=30.0, backoff_cap_s=30.0), rng=random.Random(2))
        delivery.start()
        await _wait_for_arrivals(emulator, 1)
        await asyncio.sleep(0.2)
        await delivery.shutdown()
        [job] = await store.failing_jobs(conn.name)
        assert (job.attempts, job.throttles) == (1, 0)
        assert job.last_error is not None and job.last_error.startswith("http_503")
        assert len(emulator.arrivals) == 1, "the backoff keeps the job waiting"
        await store.close()
        await emulator.close()

    run_async(scenario())


def test_connection_resets_are_retried_until_delivered(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        emulator.add_fault({"reset": True, "count": 3})
        store = open_store(tmp_path / "jobs.sqlite3")
        conn = connection(emulator.url)
        await enqueue(store, conn, batches(2))
        delivery = Delivery(conn, store)
        delivery.start()
        await delivery.until_empty()
        await delivery.shutdown()
        assert emulator.statuses().count(0) == 3
        assert sorted(emulator.unique_ids()) == ["m0", "m1"]
        await store.close()
        await emulator.close()

    run_async(scenario())


def test_a_response_slower_than_the_client_timeout_is_retried_and_recorded_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        # Answered (and recorded) after 0.6 s, when the client gave up at 0.3 s.
        emulator.add_fault({"delay_ms": 600, "count": 2})
        store = open_store(tmp_path / "jobs.sqlite3")
        conn = connection(emulator.url)
        await enqueue(store, conn, batches(1))
        delivery = Delivery(conn, store, timeout_s=0.3)
        delivery.start()
        await delivery.until_empty()
        await delivery.shutdown()
        assert emulator.unique_ids() == ["m0"]
        assert emulator.emulator.state.requests >= 2
        assert await dead_jobs(store) == []
        await store.close()
        await emulator.close()

    run_async(scenario())


def test_a_job_is_dead_lettered_as_retries_exhausted_with_its_cause_after_max_attempts(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        emulator.add_fault({"status": 503})
        store = open_store(tmp_path / "jobs.sqlite3")
        conn = connection(emulator.url)
        await enqueue(store, conn, batches(1))
        delivery = Delivery(conn, store, options(max_attempts=3))
        delivery.start()
        await delivery.until_empty()
        await delivery.shutdown()
        [dead] = await dead_jobs(store)
        assert (dead.dead_reason, dead.attempts) == ("retries_exhausted:http_503", 3)
        assert dead.last_error is not None and dead.last_error.startswith("http_503")
        assert emulator.statuses() == [503, 503, 503]
        await store.close()
        await emulator.close()

    run_async(scenario())


@pytest.mark.parametrize(
    ("status", "reason", "error"),
    [(500, "max_age:http_500", "http_500"), (429, "max_age:throttled", "throttled (429) past max_age_s")],
)
def test_a_job_older_than_max_age_is_dead_lettered_at_its_next_failure_or_429(
    tmp_path: Path, status: int, reason: str, error: str
) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        emulator.add_fault({"status": status})
        store = open_store(tmp_path / "jobs.sqlite3")
        conn = connection(emulator.url)
        await enqueue(store, conn, batches(1))
        await asyncio.sleep(0.3)
        delivery = Delivery(conn, store, options(max_age_s=0.2))
        delivery.start()
        await delivery.until_empty()
        await delivery.shutdown()
        [dead] = await dead_jobs(store)
        assert dead.dead_reason == reason
        assert (dead.last_error or "").startswith(error)
        assert emulator.statuses() == [status]
        await store.close()
        await emulator.close()

    run_async(scenario())


async def _wait_for_arrivals(emulator: RecordingEmulator, count: int) -> None:
    for _ in range(500):
        if len(emulator.arrivals) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {count} requests reached the emulator")


def test_the_wall_clock_is_injected_so_a_job_can_be_aged_past_max_age(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        emulator.add_fault({"status": 503, "count": 1})
        store = open_store(tmp_path / "jobs.sqlite3")
        conn = connection(emulator.url)
        await enqueue(store, conn, [user_batch("aged", [custom_event("m-aged")])])
        eight_days_on = time.time() + 8 * 86400  # past the 7-day default max_age_s
        client = e2e_client_for(conn)
        dispatcher = Dispatcher(conn, store, client, Metrics(), FAST, wall_clock=lambda: eight_days_on)
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))

        async def buried() -> bool:
            return len(await dead_jobs(store)) == 1

        await wait_until(buried, 10, "the aged job's dead letter")
        stop.set()
        await task
        await dispatcher.drain(1)
        await client.close()
        assert [job.dead_reason for job in await dead_jobs(store)] == ["max_age:http_503"]
        await store.close()
        await emulator.close()

    run_async(scenario())
