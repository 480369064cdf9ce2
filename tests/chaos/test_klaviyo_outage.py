"""Klaviyo down for longer than the old retry window: nothing dead-lettered, ingest unaffected (issue 8, chaos suite).

A sender posts one event a time to ``/v2/events`` at a steady rate; Klaviyo (the emulator) stops
listening, its port refusing connections, for ``OUTAGE_S``, then comes back on the same port.
With ``max_attempts = 5`` the old retries (full jitter: 2 + 4 + 8 + 16 s at most, 15 s on average)
were spent well within the outage, burying most events that arrived early in it. Now the account's
circuit pauses delivery instead: no dead letter, every acknowledged event recorded once, and ingest
answered 202 fast all along.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from mparticle_klaviyo.store.base import JobState
from tests.chaos.rig import Sender, ServeRig, assert_delivered_once, assert_served_within, bounded, until

# The circuit opens about 1 s into the outage and probes 0.5-1, 1.5-3, 3.5-7 and 7.5-15 s after that
# (each wait drawn from [w/2, w], w doubling from 1 s). An outage of 15 s ends before its fifth probe
# can come (15.5 s at the earliest), so Klaviyo is probed at most 16 s after it is back.
OUTAGE_S = 15.0
MAX_ATTEMPTS = 5


class Outage:
    """What the store held as the outage ended: events queued, and events dead-lettered."""

    def __init__(self, stored: dict[str, JobState]) -> None:
        self.queued = sum(1 for state in stored.values() if state is not JobState.DEAD)
        self.dead = sorted(i for i, state in stored.items() if state is JobState.DEAD)


async def through_an_outage(rig: ServeRig) -> tuple[Sender, Outage]:
    """Steady posts before, during and after an outage of ``OUTAGE_S``; then everything delivered."""
    async with Sender(rig, rate=25.0) as sender:
        await until(lambda: len(rig.recorded()) >= 25, 15, "deliveries before the outage")
        await rig.klaviyo_down()
        await asyncio.sleep(OUTAGE_S)  # the outage itself: events keep coming
        outage = Outage(rig.stored())
        await rig.klaviyo_up()
        up_at = time.monotonic()
        await until(lambda: len(sender.since(up_at)) >= 25, 10, "posts after Klaviyo is back")
        await sender.stop()
        assert not outage.dead, f"{len(outage.dead)} events dead-lettered during the outage, e.g. {outage.dead[:5]}"
        # Jobs paused by the circuit wait for the probe they were told of: up to 32 s (a failed probe's own job).
        await assert_delivered_once(rig, sender.acked(), timeout_s=45)
    return sender, outage


@pytest.mark.timeout(150)
def test_an_outage_longer_than_the_retry_window_buries_nothing_and_ingest_keeps_answering(tmp_path: Path) -> None:
    async def scenario() -> tuple[Sender, Outage]:
        async with ServeRig(tmp_path, max_attempts=MAX_ATTEMPTS) as rig:
            return await through_an_outage(rig)

    started = time.monotonic()
    sender, outage = bounded(scenario, 100)
    p99 = assert_served_within(sender.answers)
    print(
        f"{len(sender.answers)} posts: {Counter(a.status for a in sender.answers)}; "
        f"{outage.queued} events queued as the outage ended; p99 {p99:.3f} s; {time.monotonic() - started:.1f} s"
    )
    assert outage.queued >= 100, f"the outage held back only {outage.queued} events"
    assert {a.status for a in sender.answers} == {202}, Counter(a.status for a in sender.answers)
