"""``kill -9`` under steady load, three times: no acknowledged event is lost (issue 8, chaos suite).

A sender posts one event a time to ``/v2/events`` at a steady rate while Klaviyo answers some
requests late (so kills land with deliveries in flight); serve is SIGKILLed mid-run and restarted
on the same store, three times. Then it drains: every event answered 202 is at Klaviyo, recorded
once, none dead-lettered. Resends after a crash are allowed: Klaviyo drops them by ``unique_id``.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.rig import Sender, ServeRig, assert_delivered_once, assert_served_within, bounded, until

KILLS = 3
ACKS_BETWEEN_KILLS = 40  # 202s from each incarnation before it is killed: it is serving, under load


async def acked_more(sender: Sender, count: int, timeout_s: float = 15.0) -> None:
    """Wait until ``count`` more events than now have been answered 202."""
    target = len(sender.acked()) + count
    await until(lambda: len(sender.acked()) >= target, timeout_s, f"{count} more 202s")


async def kill_and_drain(rig: ServeRig) -> tuple[Sender, list[int]]:
    """Three kill -9s under load, then the rest of the load; (the sender, jobs in the store at each kill)."""
    rig.add_fault({"delay_ms": 300, "probability": 0.5})
    at_kill: list[int] = []
    async with Sender(rig, rate=40.0) as sender:
        for _ in range(KILLS):
            await acked_more(sender, ACKS_BETWEEN_KILLS)
            at_kill.append(len(rig.stored()))
            await rig.kill()
            await rig.restart()
        await acked_more(sender, ACKS_BETWEEN_KILLS)
        await sender.stop()
        await sender.resend(sender.unacked())
    await assert_delivered_once(rig, sender.acked(), timeout_s=30)
    return sender, at_kill


@pytest.mark.timeout(120)
def test_kill_9_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    async def scenario() -> tuple[Sender, list[int], int]:
        async with ServeRig(tmp_path) as rig:
            sender, at_kill = await kill_and_drain(rig)
            return sender, at_kill, rig.klaviyo_state()["duplicates_dropped"]

    started = time.monotonic()
    sender, at_kill, duplicates = bounded(scenario, 90)
    p99 = assert_served_within(sender.answers)
    print(
        f"{len(sender.answers)} posts, {len(sender.unacked())} not acknowledged and resent "
        f"({Counter(a.error for a in sender.answers if a.error)}); "
        f"jobs in the store at each kill {at_kill}; {duplicates} resends dropped by Klaviyo; "
        f"p99 {p99:.3f} s; {time.monotonic() - started:.1f} s"
    )
    assert len(at_kill) == KILLS and any(at_kill), f"no kill hit queued or leased jobs: {at_kill}"
    assert {a.status for a in sender.answers} <= {202, None}, sorted({a.status for a in sender.answers}, key=str)
