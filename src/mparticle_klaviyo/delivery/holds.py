"""Which claimed jobs may be sent now: the per-profile rules a claim passes before it is sent.

In the order the dispatcher applies them: an erasure drops its profile's older jobs
(``erasures.py``); a profile with a failing job holds its later ones (``barrier.py``); a
profile's consent changes and erasures are never open with what they must follow
(``profile_order.py``). Held jobs go back to the store, due a little later, without counting an
attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from mparticle_klaviyo.delivery.barrier import Barrier
from mparticle_klaviyo.delivery.erasures import erase_behind
from mparticle_klaviyo.delivery.profile_order import ProfileOrder
from mparticle_klaviyo.delivery.settle import Settler
from mparticle_klaviyo.delivery.units import MappedJob
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.store.async_store import AsyncJobStore
from mparticle_klaviyo.store.base import Job

log = logging.getLogger("mparticle_klaviyo.delivery")
# A job held behind an open job of its profile (profile_order.py) is claimed again after this.
_PROFILE_HOLD_S = 0.5


class Holds:
    """The hold-back rules of one delivery term (they start afresh with each lease term)."""

    def __init__(
        self,
        connection: str,
        store: AsyncJobStore,
        metrics: Metrics,
        settler: Settler,
        now: Callable[[], float],
        epoch: Callable[[], int | None],
    ) -> None:
        self.connection = connection
        self.store = store
        self.metrics = metrics
        self.settler = settler
        self.barrier: Barrier = settler.barrier
        self.profile_order = ProfileOrder()
        self._now = now
        self._epoch = epoch

    async def rebuild_barrier(self) -> None:
        """After a restart, profiles with failing jobs are blocked again, as before the crash."""
        for job in await self.store.failing_jobs(self.connection):
            self.barrier.failed(job.profile_key, job.id)
            self.settler.blocker_due[job.id] = job.run_at

    async def blocked(self, jobs: list[Job]) -> list[Job]:
        """Jobs behind a failing job of their profile go back, due after that job's retry.

        When a profile's blocker is retried, its next failed jobs go with it as long as each is
        the next one in id order (in one bulk request in server mode); holding each until the one
        before succeeded would drain a busy profile at one job per hold.
        """
        admission = self.barrier.admit((job.profile_key, job.id) for job in jobs)
        held: dict[float, list[int]] = {}
        now = self._now()
        for job_id, blocker in admission.held.items():
            due = max(now + 0.5, self.settler.blocker_due.get(blocker, now) + 0.1)
            held.setdefault(due, []).append(job_id)
        sent = set(admission.send)
        sendable = [job for job in jobs if job.id in sent]
        for due, ids in held.items():  # one write per blocker, not one per held job
            reason = "held: an earlier job of this profile is being retried"
            await self.store.retry(ids, due, reason, False, epoch=self._epoch())
        return sendable

    async def erasures(self, jobs: list[Job]) -> list[Job]:
        """Drop the older jobs of profiles this claim erases (erasures.py); the rest goes on."""
        erased = await erase_behind(self.store, self.barrier, self.connection, jobs)
        if erased.dropped:
            await self.store.ack([job.id for job in erased.dropped], epoch=self._epoch())
        count = len(erased.dropped) + len(erased.deleted)
        if count:
            self.metrics.erased.labels(self.connection).inc(count)
            log.info("dropped jobs of erased profiles", extra={"connection": self.connection, "jobs": count})
        return erased.keep

    async def by_profile(self, mapped: list[MappedJob]) -> list[MappedJob]:
        """Jobs that must not be open with others of their profile wait a moment (profile_order.py)."""
        start, held = self.profile_order.admit(m.job for m in mapped)
        if held:
            due = self._now() + _PROFILE_HOLD_S
            reason = "held: another change of this profile is open"
            await self.store.retry([job.id for job in held], due, reason, False, epoch=self._epoch())
        started = {job.id for job in start}
        return [m for m in mapped if m.job.id in started]
