"""The store deleted under steady load: no 202 from then on, nothing acknowledged lost (issue 8, chaos suite).

A sender posts one event a time to ``/v2/events`` at a steady rate; the store's files (database,
``-wal``, ``-shm``) are deleted under the running serve. Every post that goes out after that must
be refused with a 503, and what was acknowledged before must still be delivered from the file
serve holds open. Then serve is restarted on the same config (a new, empty store), the refused
events are sent again, and every event acknowledged overall is at Klaviyo, recorded once.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.rig import Sender, ServeRig, assert_delivered_once, assert_served_within, bounded, until

STORE_FILES = ("", "-wal", "-shm")
POSTS_AFTER = 40  # posts that run into the deleted store


def delete_store(store: Path) -> float:
    """Remove the store's files, as the operator in the issue did; the moment (time.monotonic()) it was done."""
    for suffix in STORE_FILES:
        Path(f"{store}{suffix}").unlink(missing_ok=True)
    return time.monotonic()


async def delete_under_load(rig: ServeRig) -> tuple[Sender, float]:
    """Steady posts, the store deleted among them, a restart, the refused ones resent; (sender, deletion time)."""
    async with Sender(rig, rate=25.0) as sender:
        await until(lambda: len(sender.acked()) >= 25, 15, "25 events acknowledged before the deletion")
        deleted_at = delete_store(rig.store)
        await until(lambda: len(sender.since(deleted_at)) >= POSTS_AFTER, 15, f"{POSTS_AFTER} answers after it")
        await sender.stop()
        # What was acknowledged is delivered from the unlinked file serve still holds open.
        await assert_delivered_once(rig, sender.acked(), timeout_s=20)
        await rig.restart()
        await sender.resend(sender.unacked())
        await assert_delivered_once(rig, sender.acked(), timeout_s=20)
    return sender, deleted_at


@pytest.mark.timeout(120)
def test_a_deleted_store_refuses_every_later_post_and_loses_nothing_acknowledged(tmp_path: Path) -> None:
    async def scenario() -> tuple[Sender, float]:
        async with ServeRig(tmp_path) as rig:
            return await delete_under_load(rig)

    started = time.monotonic()
    sender, deleted_at = bounded(scenario, 90)
    after = sender.since(deleted_at)
    p99 = assert_served_within(sender.answers)
    print(
        f"{len(sender.answers)} posts: {Counter(a.status for a in sender.answers)}; "
        f"after the deletion {Counter(a.status for a in after)}; p99 {p99:.3f} s; {time.monotonic() - started:.1f} s"
    )
    acknowledged_after = [a.n for a in after if a.status == 202]
    assert not acknowledged_after, f"{len(acknowledged_after)} posts acknowledged into a deleted store"
    assert {a.status for a in after} == {503}, Counter(a.status for a in after)
