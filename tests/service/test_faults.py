"""Delivery under the emulator's injected faults: storms of 429s, 5xx, resets and slow answers.

The dispatcher runs in this test's loop on a real SQLite store, against the strict emulator.
Random faults draw from a seeded generator; the seed is printed (``MPK_FAULT_SEED`` repeats a run).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import sqlite3
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from mparticle_klaviyo.delivery.dispatch_options import DispatchOptions
from mparticle_klaviyo.jobs.plan import unique_id_of
from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig
from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.base import DeadFilter
from mparticle_klaviyo.store.sqlite import SqliteJobStore
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

OLD_REVISION = "2026-01-15"  # event times must be after 2000 at this revision; our mapping allows 1990 on
YEAR_1995_MS = 800_000_000_000
PATIENT = options(max_attempts=50)


def _seed() -> int:
    seed = int(os.environ.get("MPK_FAULT_SEED", random.randrange(2**32)))
    print(f"fault seed: {seed} (rerun with MPK_FAULT_SEED={seed})")
    return seed


def _batches(count: int, users: int = 20) -> list[dict[str, object]]:
    """``count`` events over ``users`` profiles, one batch (one job) each."""
    return [user_batch(f"u{n % users}", [custom_event(f"m{n}")]) for n in range(count)]


def _recorded_once(emulator: RecordingEmulator, expected: set[str], seed: int) -> None:
    counts = Counter(emulator.unique_ids())
    missing = expected - set(counts)
    assert not missing, f"seed {seed}: lost {sorted(missing)[:5]}"
    assert set(counts) == expected, f"seed {seed}: unexpected {sorted(set(counts) - expected)[:5]}"
    assert max(counts.values()) == 1, f"seed {seed}: recorded twice: {[k for k, v in counts.items() if v > 1][:5]}"


def test_a_429_storm_with_retry_after_loses_nothing_and_nothing_is_sent_while_the_gate_is_closed(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        # Klaviyo allows 30/s where the client believes 1000/s: most of a burst is throttled.
        limits = {**FAST_LIMITS, "POST /client/events": (30, 10_000)}
        async with DeliveryRig(
            tmp_path,
            emulator=EmulatorConfig(rate_limits=limits),
            batches=_batches(120),
            options=options(max_attempts=1),
        ) as rig:
            await rig.until_empty(timeout_s=30)
            await rig.shutdown()
            throttled = [a for a in rig.emulator.arrivals if a.status == 429]
            assert len(throttled) >= 10, "a storm, not a drizzle"
            assert all(a.retry_after is not None for a in throttled)
            assert gate_violations(rig.emulator.arrivals, FAST.default_retry_after_s) == []
            assert await rig.dead() == [], "429s never count as attempts"
            _recorded_once(rig.emulator, {f"m{n}" for n in range(120)}, seed=0)

    run_async(scenario())


def test_random_500s_503s_and_connection_resets_lose_nothing_and_record_each_event_once(tmp_path: Path) -> None:
    seed = _seed()

    async def scenario() -> None:
        faults = [
            {"status": 500, "probability": 0.15},
            {"status": 503, "probability": 0.15},
            {"reset": True, "probability": 0.1},
        ]
        async with DeliveryRig(
            tmp_path,
            emulator=EmulatorConfig(rate_limits=dict(FAST_LIMITS), fault_seed=seed),
            faults=faults,
            batches=_batches(300),
            options=PATIENT,
            rng=random.Random(seed),
        ) as rig:
            await rig.until_empty(timeout_s=30)
            await rig.shutdown()
            statuses = Counter(rig.emulator.statuses())
            assert statuses[500] and statuses[503] and statuses[0], f"seed {seed}: every fault fired: {statuses}"
            assert await rig.dead() == [], f"seed {seed}"
            _recorded_once(rig.emulator, {f"m{n}" for n in range(300)}, seed)

    run_async(scenario())


def test_answers_slower_than_the_client_timeout_lose_nothing_and_record_each_event_once(tmp_path: Path) -> None:
    seed = _seed()

    async def scenario() -> None:
        # Late answers are still recorded by Klaviyo: the client's resend must be deduplicated.
        async with DeliveryRig(
            tmp_path,
            emulator=EmulatorConfig(rate_limits=dict(FAST_LIMITS), fault_seed=seed),
            faults=[{"delay_ms": 400, "probability": 0.2}],
            batches=_batches(150),
            options=PATIENT,
            timeout_s=0.2,
            rng=random.Random(seed),
        ) as rig:
            await rig.until_empty(timeout_s=30)
            await rig.shutdown()
            assert rig.emulator.emulator.state.faults_injected > 0
            assert await rig.dead() == [], f"seed {seed}"
            _recorded_once(rig.emulator, {f"m{n}" for n in range(150)}, seed)

    run_async(scenario())


def test_in_a_storm_only_the_events_klaviyo_refuses_are_dead_lettered_with_the_reason(tmp_path: Path) -> None:
    seed = _seed()

    async def scenario() -> None:
        async with _bad_events_in_a_storm(tmp_path, seed) as rig:
            dead = await rig.dead()
            assert sorted(unique_id_of(job.key) for job in dead) == ["bad-1", "bad-2"], f"seed {seed}"
            assert {job.dead_reason for job in dead} == {"http_400"}
            assert all(job.last_error and "'time' must be after the year 2000" in job.last_error for job in dead)
            _recorded_once(rig.emulator, {f"m{n}" for n in range(400)}, seed)

    run_async(scenario())


def test_redriving_dead_letters_after_fixing_the_connection_delivers_them(tmp_path: Path) -> None:
    seed = _seed()

    async def scenario() -> None:
        async with _bad_events_in_a_storm(tmp_path, seed) as rig:
            # The fix: a current revision, at which Klaviyo accepts event times from 1990 on.
            fixed = rig.connection(server=True)
            operator = SqliteJobStore(rig.store_path)
            assert operator.redrive(DeadFilter(connection=rig.conn.name, reason="http_400"), time.time()) == 2
            operator.close()
            rig.deliver(PATIENT, conn=fixed)
            await rig.until_empty(timeout_s=30)
            await rig.shutdown()
            assert await rig.dead() == []
            assert await rig.store.counts() == []
            _recorded_once(rig.emulator, {f"m{n}" for n in range(400)} | {"bad-1", "bad-2"}, seed)

    run_async(scenario())


def test_a_store_locked_past_its_busy_timeout_pauses_delivery_which_then_resumes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(tmp_path, store=_impatient_store(tmp_path), batches=_batches(5), start=False) as rig:
            # Another process (an operator's sqlite3 shell, a long purge) holds the write lock.
            locker = sqlite3.connect(rig.store_path, isolation_level=None)
            locker.execute("BEGIN IMMEDIATE")
            rig.start()
            await asyncio.sleep(0.5)
            assert rig.emulator.arrivals == [], "nothing can be claimed while the store is locked"
            locker.execute("COMMIT")
            locker.close()
            await rig.until_empty(timeout_s=10)
            await rig.shutdown()
            _recorded_once(rig.emulator, {f"m{n}" for n in range(5)}, seed=0)

    run_async(scenario())


@pytest.mark.parametrize(
    "recovery",
    [
        # Another process may own leases: the jobs come back when their lease expires.
        options(lease_s=0.5, release_every_s=0.2),
        # The sole owner never expires leases: it retries the jobs itself, as after a failure.
        options(sole_owner=True, lease_s=3600.0, backoff_base_s=0.05),
    ],
    ids=["lease-expiry", "sole-owner-retry"],
)
def test_jobs_whose_ack_failed_are_sent_again_and_recorded_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, recovery: DispatchOptions
) -> None:
    async def scenario() -> None:
        async with DeliveryRig(
            tmp_path,
            faults=[{"delay_ms": 300, "count": 5}],
            store=_impatient_store(tmp_path),
            batches=_batches(5),
            options=recovery,
        ) as rig:
            emulator = rig.emulator
            await wait_until(_true_when(lambda: emulator.emulator.state.requests >= 5), 5.0, "five sends in flight")
            locker = sqlite3.connect(rig.store_path, isolation_level=None)
            locker.execute("BEGIN IMMEDIATE")  # Klaviyo accepts them, but the acks cannot be written
            await asyncio.sleep(0.6)
            locker.execute("COMMIT")
            locker.close()
            await rig.until_empty(timeout_s=10)
            await rig.shutdown()
            assert emulator.emulator.state.duplicates_dropped >= 1, "sent again, deduplicated by unique_id"
            _recorded_once(emulator, {f"m{n}" for n in range(5)}, seed=0)

    with caplog.at_level(logging.ERROR, logger="mparticle_klaviyo.delivery"):
        run_async(scenario())
    assert "a send unit failed" in caplog.text


def _true_when(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return condition()

    return check


def _impatient_store(tmp_path: Path) -> AsyncStore:
    """The rig's store file, opened to fail fast on a locked database instead of after 5 s."""
    inner = SqliteJobStore(tmp_path / "jobs.sqlite3")
    assert inner._conn is not None
    inner._conn.execute("PRAGMA busy_timeout = 50")
    return AsyncStore(inner)


@asynccontextmanager
async def _bad_events_in_a_storm(tmp_path: Path, seed: int) -> AsyncIterator[DeliveryRig]:
    """Server mode at an old revision, two events Klaviyo refuses among 400, with 503s and 429s."""
    revisions = frozenset({OLD_REVISION, "2026-07-15"})
    config = EmulatorConfig(rate_limits=dict(FAST_LIMITS), revisions=revisions, fault_seed=seed)
    batches = _batches(400, users=200)
    batches.insert(100, user_batch("u7", [custom_event("bad-1", ms=YEAR_1995_MS)]))
    batches.insert(300, user_batch("u9", [custom_event("bad-2", ms=YEAR_1995_MS)]))
    async with DeliveryRig(
        tmp_path,
        emulator=config,
        faults=[{"status": 429, "count": 2}, {"status": 503, "probability": 0.3}],
        server=True,
        revision=OLD_REVISION,
        batches=batches,
        options=options(max_attempts=50, claim_batch=150),
        rng=random.Random(seed),
    ) as rig:
        await rig.until_empty(timeout_s=30)
        await rig.shutdown()
        yield rig
