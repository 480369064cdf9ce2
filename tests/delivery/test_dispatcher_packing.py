"""Bulk jobs are packed when a send may go, from everything waiting then (issue 9, finding 1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.service.e2e_helpers import (
    FAST_LIMITS,
    custom_event,
    run_async,
    user_batch,
    wait_until,
)
from tests.service.rig import DeliveryRig

BULK = "/api/event-bulk-create-jobs"
SUBSCRIBE = "/api/profile-subscription-bulk-create-jobs"


def slow_limits(**changes: tuple[int, int]) -> dict[str, list[int]]:
    """``FAST_LIMITS`` with some endpoints slowed down, as a connection's ``rate_limits``."""
    return {endpoint: list(changes.get(endpoint, limits)) for endpoint, limits in FAST_LIMITS.items()}


def test_events_trickling_in_faster_than_bulk_jobs_may_go_share_the_jobs(tmp_path: Path) -> None:
    # Seen: 2 bulk jobs/s and 4/min allowed, 300 single-event batches one every 0.1 s: after 80 s
    # Klaviyo had 4 events, one per job; the other jobs queued in the limiter, one event each.
    async def scenario() -> None:
        limits = slow_limits(**{"POST /api/event-bulk-create-jobs": (1, 60)})
        async with DeliveryRig(tmp_path, server=True, rate_limits=limits) as rig:
            for n in range(60):  # 20 a second, against one bulk job a second
                await rig.enqueue([user_batch(f"u{n}", [custom_event(f"m{n}")])])
                rig.wake()
                await asyncio.sleep(0.05)

            async def all_recorded() -> bool:
                return len(set(rig.emulator.unique_ids())) == 60

            await wait_until(all_recorded, 12, "all 60 events")
            await rig.shutdown()
            jobs = [a for a in rig.emulator.arrivals if a.path == BULK]
            assert len(jobs) <= 10, f"{len(jobs)} bulk jobs for 60 events"

    run_async(scenario())


def test_a_lone_event_is_sent_at_once_without_waiting_for_company(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(tmp_path, server=True) as rig:
            await rig.enqueue([user_batch("alone", [custom_event("m-alone")])])
            rig.wake()

            async def recorded() -> bool:
                return rig.emulator.unique_ids() == ["m-alone"]

            await wait_until(recorded, 2, "the lone event")
            await rig.shutdown()

    run_async(scenario())


def test_consents_trickling_in_share_subscription_jobs(tmp_path: Path) -> None:
    async def scenario() -> None:
        limits = slow_limits(**{"POST /api/profile-subscription-bulk-create-jobs": (1, 60)})
        async with DeliveryRig(tmp_path, server=True, rate_limits=limits) as rig:
            for n in range(40):
                await rig.enqueue([user_batch(f"c{n}", [custom_event(f"c{n}")], consent=True)])
                rig.wake()
                await asyncio.sleep(0.05)

            async def all_subscribed() -> bool:
                return len(rig.emulator.state()["subscriptions"]) >= 40

            await wait_until(all_subscribed, 12, "40 subscriptions")
            await rig.shutdown()
            jobs = [a for a in rig.emulator.arrivals if a.path == SUBSCRIBE]
            assert len(jobs) <= 8, f"{len(jobs)} subscription jobs for 40 profiles"

    run_async(scenario())
