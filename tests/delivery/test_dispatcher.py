"""The dispatcher delivering from a real SQLite store to the strict emulator: what reaches Klaviyo."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from mparticle_klaviyo.jobs.plan import EVENT, unique_id_of
from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig
from mparticle_klaviyo.store.base import NewJob
from tests.service.e2e_helpers import (
    FAST_LIMITS,
    custom_event,
    options,
    purchase_event,
    run_async,
    user_batch,
    wait_until,
)
from tests.service.rig import DeliveryRig

BULK = "/api/event-bulk-create-jobs"
OLD_REVISION = "2026-01-15"  # Klaviyo wanted event times after 2000 then; our mapping allows 1990 on
YEAR_1995_MS = 800_000_000_000


def test_client_mode_delivers_every_event_once_and_empties_the_store(tmp_path: Path) -> None:
    async def scenario() -> None:
        batches = [user_batch(f"u{n}", [custom_event(f"m{n}-{k}") for k in range(3)]) for n in range(40)]
        async with DeliveryRig(tmp_path, batches=batches) as rig:
            await rig.until_empty()
            await rig.shutdown()
            ids = rig.emulator.unique_ids()
            assert sorted(ids) == sorted(f"m{n}-{k}" for n in range(40) for k in range(3))
            assert set(rig.emulator.statuses()) == {202}
            assert {a.path for a in rig.emulator.arrivals} == {"/client/events"}
            assert await rig.dead() == []
            assert (await rig.store.counts()) == []

    run_async(scenario())


def test_a_purchase_in_client_mode_records_the_order_and_each_product(tmp_path: Path) -> None:
    async def scenario() -> None:
        batches = [user_batch("buyer", [purchase_event("order-1", products=3)])]
        async with DeliveryRig(tmp_path, batches=batches) as rig:
            await rig.until_empty()
            await rig.shutdown()
            metrics = Counter(event["metric"] for event in rig.emulator.emulator.state.events)
            assert sum(metrics.values()) == 4, metrics
            assert len(set(rig.emulator.unique_ids())) == 4
            assert await rig.store.backlog() == 0

    run_async(scenario())


def test_server_mode_packs_events_into_bulk_jobs_of_at_most_1000_events(tmp_path: Path) -> None:
    async def scenario() -> None:
        batches = [user_batch(f"u{n}", [custom_event(f"m{n}-{k}") for k in range(5)]) for n in range(500)]
        knobs = options(claim_batch=2500, max_in_flight_jobs=2500)
        async with DeliveryRig(tmp_path, server=True, batches=batches, options=knobs) as rig:
            await rig.until_empty(timeout_s=30)
            await rig.shutdown()
            bulk = [a for a in rig.emulator.arrivals if a.path == BULK]
            assert sorted(a.events for a in bulk) == [500, 1000, 1000]
            assert {a.status for a in bulk} == {202}
            assert len(set(rig.emulator.unique_ids())) == len(rig.emulator.unique_ids()) == 2500
            assert await rig.store.backlog() == 0

    run_async(scenario())


def test_consent_is_subscribed_once_per_granted_profile_and_channels(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(tmp_path, start=False) as rig:
            # The same grant arrives with three batches (mParticle repeats consent state in every batch).
            for n in range(3):
                await rig.enqueue([user_batch("ada", [custom_event(f"m{n}")], consent=True)])
            await rig.enqueue([user_batch("grace", [custom_event("g0")], consent=True)])
            rig.start()
            await rig.until_empty()
            await rig.shutdown()
            subscriptions = rig.emulator.emulator.state.subscriptions
            assert sorted(s["email"] for s in subscriptions) == ["ada@example.com", "grace@example.com"]
            assert all(s["list_id"] == "LIST01" for s in subscriptions)
            assert len(rig.emulator.unique_ids()) == 4

    run_async(scenario())


def test_a_permanent_4xx_dead_letters_the_job_with_the_reason_and_klaviyos_answer(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = EmulatorConfig(company_ids=frozenset({"OTHER1"}), rate_limits=dict(FAST_LIMITS))
        batches = [user_batch("ada", [custom_event("m1")])]
        async with DeliveryRig(tmp_path, emulator=config, batches=batches) as rig:
            await rig.until_empty()
            await rig.shutdown()
            [dead] = await rig.dead()
            assert dead.dead_reason == "http_400"
            assert dead.last_error is not None and "Invalid company_id" in dead.last_error
            assert "DEMO01" not in dead.last_error, "the public key is redacted from the stored answer"
            assert dead.attempts == 1, "the refusal is the job's one failure"
            assert rig.emulator.statuses() == [400], "a permanent failure is not retried"

    run_async(scenario())


def test_one_bad_event_in_a_bulk_job_is_dead_lettered_and_the_others_are_delivered(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = EmulatorConfig(rate_limits=dict(FAST_LIMITS), revisions=frozenset({OLD_REVISION, "2026-07-15"}))
        batches = [user_batch(f"u{n}", [custom_event(f"m{n}")]) for n in range(30)]
        # Ada's second event is from 1995: we map it, Klaviyo's old revision refuses it.
        batches.append(
            user_batch("ada", [custom_event("ada-1"), custom_event("ada-old", ms=YEAR_1995_MS), custom_event("ada-3")])
        )
        async with DeliveryRig(tmp_path, emulator=config, server=True, revision=OLD_REVISION, batches=batches) as rig:
            await rig.until_empty()
            await rig.shutdown()
            [dead] = await rig.dead()
            assert unique_id_of(dead.key) == "ada-old"
            assert dead.dead_reason == "http_400"
            assert dead.last_error is not None and "after the year 2000" in dead.last_error
            assert dead.last_error.count("(at /data/attributes/events-bulk-create/data/") == 1
            assert sorted(rig.emulator.unique_ids()) == sorted([f"m{n}" for n in range(30)] + ["ada-1", "ada-3"])

    run_async(scenario())


def test_a_job_that_no_longer_maps_is_dead_lettered_as_unmappable_without_a_request(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(tmp_path, start=False) as rig:
            garbage = NewJob(
                connection=rig.conn.name, key="k1", profile_key="email:x@example.com", kind=EVENT, payload=b"\xc1"
            )
            await rig.store.enqueue([garbage], time.time())
            rig.start()
            await rig.until_empty()
            await rig.shutdown()
            [dead] = await rig.dead()
            assert dead.dead_reason == "unmappable"
            assert rig.emulator.arrivals == []

    run_async(scenario())


async def _quiesced(rig: DeliveryRig, sending: int) -> tuple[float, int]:
    """Wait until ``sending`` requests are out (slow answers), quiesce, then stop; (when, jobs left)."""
    await wait_until(lambda: _true(rig.emulator.emulator.state.requests >= sending), 10.0, "requests out")
    quiesced_at = time.monotonic()
    await rig.delivery.dispatcher.quiesce(5.0)
    await rig.shutdown(drain_s=0.0)
    return quiesced_at, await rig.store.backlog()


async def _true(value: bool) -> bool:
    return value


def test_a_quiesce_settles_the_requests_already_out_and_sends_nothing_new(tmp_path: Path) -> None:
    async def scenario() -> None:
        batches = [user_batch(f"u{n}", [custom_event(f"m{n}")]) for n in range(30)]
        async with DeliveryRig(tmp_path, batches=batches, faults=[{"delay_ms": 500}]) as rig:
            quiesced_at, left = await _quiesced(rig, 2)
            answered = [a for a in rig.emulator.arrivals if a.status == 202]
            assert [a for a in rig.emulator.arrivals if a.at > quiesced_at] == [], "nothing new went out"
            assert 0 < len(answered) < 30
            assert left == 30 - len(answered), "every answered job was acked; the others wait, not leased"
            assert len(rig.emulator.unique_ids()) == len(answered)

    run_async(scenario())


def test_a_quiesce_in_server_mode_settles_the_bulk_job_out_and_packs_no_other(tmp_path: Path) -> None:
    async def scenario() -> None:
        batches = [user_batch(f"u{n}", [custom_event(f"m{n}")]) for n in range(20)]
        knobs = options(claim_batch=5, max_in_flight_jobs=20)
        async with DeliveryRig(tmp_path, server=True, options=knobs, start=False, faults=[{"delay_ms": 500}]) as rig:
            await rig.enqueue(batches)
            rig.start()
            quiesced_at, left = await _quiesced(rig, 1)
            sent = [a for a in rig.emulator.arrivals if a.path == BULK]
            assert [a for a in sent if a.at > quiesced_at] == []
            assert sum(a.events for a in sent if a.status == 202) == 20 - left
            assert len(rig.emulator.unique_ids()) == 20 - left

    run_async(scenario())
