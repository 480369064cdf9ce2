"""The store's disk fills under load: 503s, nothing acknowledged lost, 202s once space is back (issue 8, chaos suite).

The store lives on a small tmpfs (so the test needs root and ``mount``; otherwise it is skipped,
saying why), with ``store_min_free_mb = 0`` so that nothing stops writes before the disk is really
full. A filler file leaves 1 MiB free; a sender posts one event a time to ``/v2/events`` until the
store's writes fail and ingest answers 503, then the filler is deleted. Ingest must answer 202
again by itself, and every event acknowledged (and every refused one, sent again) reaches Klaviyo
once.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.chaos.rig import Sender, ServeRig, assert_delivered_once, assert_served_within, bounded, until
from tests.tmpfs import tmpfs

DISK_MIB = 8
LEFT_FREE = 1024 * 1024  # what the filler leaves: the store's WAL grows past it within a second or two


def fill(disk: Path, leave: int) -> Path:
    """A file of zeros taking all of ``disk``'s free space but ``leave`` bytes."""
    stat = os.statvfs(disk)
    filler = disk / "filler"
    filler.write_bytes(bytes(stat.f_bavail * stat.f_frsize - leave))
    return filler


async def fill_up_and_free(rig: ServeRig, disk: Path) -> tuple[Sender, float, float]:
    """Posts until the disk is full, a second more, then space is freed; (sender, full at, freed at)."""
    filler = fill(disk, LEFT_FREE)
    async with Sender(rig, rate=25.0) as sender:
        await until(lambda: any(a.status == 503 for a in sender.answers), 20, "ingest refusing on the full disk")
        full_at = time.monotonic()
        await until(lambda: len(sender.since(full_at)) >= 25, 10, "posts against the full disk")
        filler.unlink()
        freed_at = time.monotonic()
        # A failed write holds ingest for 5 s; then the next commit finds room.
        await until(lambda: any(a.status == 202 for a in sender.since(freed_at)), 15, "202s once space is back")
        back_at = time.monotonic()
        await until(lambda: len(sender.since(back_at)) >= 25, 10, "posts after that")
        await sender.stop()
        await sender.resend(sender.unacked())
        await assert_delivered_once(rig, sender.acked(), timeout_s=30)
    return sender, full_at, freed_at


@pytest.mark.timeout(120)
def test_a_full_disk_refuses_with_503_loses_nothing_and_recovers_by_itself(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", DISK_MIB) as disk:

        async def scenario() -> tuple[Sender, float, float]:
            async with ServeRig(tmp_path, store=str(disk / "jobs.sqlite3"), store_min_free_mb=0) as rig:
                return await fill_up_and_free(rig, disk)

        started = time.monotonic()
        sender, full_at, freed_at = bounded(scenario, 90)
    statuses = Counter(a.status for a in sender.answers)
    p99 = assert_served_within(sender.answers)
    print(
        f"{len(sender.answers)} posts: {statuses}; full {full_at - started:.1f} s in, "
        f"freed {freed_at - full_at:.1f} s later; p99 {p99:.3f} s; {time.monotonic() - started:.1f} s"
    )
    assert set(statuses) == {202, 503}, statuses
    after = Counter(a.status for a in sender.since(freed_at))
    assert after[202] >= 25, after
