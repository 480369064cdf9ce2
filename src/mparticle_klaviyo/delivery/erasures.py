"""Before an erasure is sent, what its profile still has queued from before it is dropped.

Such jobs would otherwise be sent after the deletion and bring the person back into Klaviyo
(and dead letters would keep their data here). Dropped: the profile's READY and DEAD jobs older
than the erasure (``JobStore.erase``), and its older jobs claimed together with the erasure.
Jobs already in flight are sent; the erasure waits for them (``profile_order.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from mparticle_klaviyo.delivery.barrier import Barrier
from mparticle_klaviyo.jobs.erasure import ERASURE, decode_erasure_job
from mparticle_klaviyo.store.async_store import AsyncJobStore
from mparticle_klaviyo.store.base import Job


class Erased(NamedTuple):
    """A claim after its erasures: the jobs to go on with, claimed ones to drop, stored ones deleted."""

    keep: list[Job]
    dropped: list[Job]
    deleted: list[Job]


async def erase_behind(store: AsyncJobStore, barrier: Barrier, connection: str, claimed: list[Job]) -> Erased:
    """Drop what the claim's erasures must not be followed by; the barrier forgets deleted failures."""
    erased_before: dict[str, int] = {}  # profile key -> the latest erasure of it in this claim
    deleted: list[Job] = []
    for erasure in (job for job in claimed if job.kind == ERASURE):
        try:
            keys = decode_erasure_job(erasure.payload).profile_keys()
        except msgspec.DecodeError:
            continue  # unreadable: mapping dead-letters it
        for key in keys:
            erased_before[key] = max(erased_before.get(key, 0), erasure.id)
        deleted += await store.erase(connection, keys, erasure.id, ERASURE)
    for job in deleted:
        barrier.done(job.profile_key, job.id)  # a deleted failing job blocks its profile no more
    dropped = [j for j in claimed if j.kind != ERASURE and j.id < erased_before.get(j.profile_key, 0)]
    gone = {job.id for job in dropped}
    return Erased([job for job in claimed if job.id not in gone], dropped, deleted)
