"""What Klaviyo's answer does to a unit's jobs: ack, retry later, postpone, or dead-letter.

Every decision comes from the pure ``RetryPolicy``; this applies it to the store, the barrier
(a failed job holds back its profile's later jobs), the metrics, one JSON log line per change
(ids, reason, status, next due; never payloads) and the optional observer (replay's counts).
Each returns its ``Verdict`` (what became of the jobs), which the console's Live stream shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from mparticle_klaviyo.delivery.backoff import Backoff
from mparticle_klaviyo.delivery.barrier import Barrier
from mparticle_klaviyo.delivery.dead_letters import (
    MAX_AGE,
    THROTTLED,
    dead_reason,
    iso_time,
    job_fields,
    postpone_cause,
)
from mparticle_klaviyo.delivery.observer import SettleObserver
from mparticle_klaviyo.delivery.retry_policy import Bury, Retry, RetryPolicy
from mparticle_klaviyo.delivery.units import Unit, culprits
from mparticle_klaviyo.klaviyo.classify import Delivered, Outcome, Permanent, Retryable
from mparticle_klaviyo.observe.live import DELIVERED, Verdict
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.store.async_store import AsyncJobStore
from mparticle_klaviyo.store.base import Job

log = logging.getLogger("mparticle_klaviyo.delivery")


class Settler:
    """Settles one connection's jobs after each answer (see the module docstring)."""

    def __init__(
        self,
        connection: str,
        store: AsyncJobStore,
        metrics: Metrics,
        policy: RetryPolicy,
        backoff: Backoff,
        barrier: Barrier,
        now: Callable[[], float],
        observer: SettleObserver | None = None,
    ) -> None:
        self.connection = connection
        self.store = store
        self.metrics = metrics
        self.policy = policy
        self._backoff = backoff
        self.barrier = barrier
        self._now = now
        self.observer = observer
        # When each failing job (a barrier blocker) is due again: held jobs come back after it.
        self.blocker_due: dict[int, float] = {}

    async def settle(self, unit: Unit, outcome: Outcome) -> Verdict:
        """Ack, retry or dead-letter the unit's jobs as Klaviyo's answer says."""
        jobs = list(unit.jobs)
        if isinstance(outcome, Delivered):
            for epoch, ids in by_epoch(jobs).items():
                await self.store.ack(ids, epoch=epoch)
            for job in jobs:
                self.done(job)
                self.metrics.delivered.labels(self.connection, job.kind).inc()
            # Event requests name each Klaviyo event they carry; consent requests name none.
            events = sum(len(request.event_keys) for request in unit.requests)
            self.metrics.events_delivered.labels(self.connection).inc(events)
            if self.observer is not None:
                self.observer.acked(unit.jobs, unit.requests)
            return DELIVERED
        if isinstance(outcome, Permanent):
            return await self._permanent(unit, outcome)
        if isinstance(outcome, Retryable):
            return await self.retry(jobs, outcome)
        return Verdict("retried", "throttled (429)", 429)  # the dispatcher postpones 429s before settling

    async def postpone(self, unit_jobs: tuple[Job, ...], wait_s: float, error: str) -> Verdict:
        """A 429 or an outage: back in the queue, due in ``wait_s``; not an attempt, but neither
        stops the clock: a job still throttled or paused past ``max_age_s`` is dead-lettered."""
        now = self._now()
        due = now + wait_s
        cause = postpone_cause(error)  # "throttled" or "klaviyo_unreachable"
        status = 429 if cause == THROTTLED else None
        expired = [job for job in unit_jobs if now - job.created_at > self.policy.max_age_s]
        buried = None
        if expired:
            buried = await self.bury(expired, dead_reason(MAX_AGE, cause), f"{error} past max_age_s", status=status)
        jobs = [job for job in unit_jobs if job not in expired]
        if not jobs:
            assert buried is not None
            return buried
        for epoch, ids in by_epoch(jobs).items():
            await self.store.retry(ids, due, error, False, epoch=epoch)
        for job in jobs:
            self.blocked(job, due)
        fields = {"reason": cause, "status": status, "attempts": max(job.attempts for job in jobs)}
        message = THROTTLED if status == 429 else "postponed"
        self._log_jobs(logging.INFO, message, jobs, **fields, next_due=iso_time(due))
        return Verdict("retried", error, status, due, _also_buried(expired))

    async def retry(self, jobs: list[Job], outcome: Retryable) -> Verdict:
        """A transient failure: try again later, or give up as the retry policy says."""
        now = self._now()
        error = f"{outcome.reason} {outcome.detail}".strip()
        again, delay, buried = await self._give_up(jobs, outcome, error, now)
        if not again:
            assert buried is not None
            return buried
        # A unit's jobs failed together and are retried together: one delay, one write (a 503 on
        # a 1000-job bulk request is not 1000 transactions, and its jobs stay in one request).
        due = now + delay
        for epoch, ids in by_epoch(again).items():
            await self.store.retry(ids, due, error, True, epoch=epoch)
        for job in again:
            self.blocked(job, due)
        self.metrics.retried.labels(self.connection, outcome.reason).inc(len(again))
        # The count after this failure; jobs of one unit may differ, so the highest of them.
        attempts = max(j.attempts for j in again) + 1
        fields = {"reason": outcome.reason, "status": outcome.status, "attempts": attempts}
        self._log_jobs(logging.INFO, "retrying", again, **fields, next_due=iso_time(due))
        return Verdict("retried", error, outcome.status, due, _also_buried([j for j in jobs if j not in again]))

    async def _give_up(
        self, jobs: list[Job], outcome: Retryable, error: str, now: float
    ) -> tuple[list[Job], float, Verdict | None]:
        """Bury the jobs the retry policy gives up on; the others, the delay of the most tried, the last burial."""
        decisions = [
            (job, self.policy.decide(outcome, job.attempts, now - job.created_at, self._backoff)) for job in jobs
        ]
        buried: dict[str, list[Job]] = {}
        for job, decision in decisions:
            if isinstance(decision, Bury):
                buried.setdefault(decision.reason, []).append(job)
        verdict = None
        for reason, gone in buried.items():
            verdict = await self.bury(gone, reason, error, status=outcome.status, failed=True)
        again = [(job, d) for job, d in decisions if isinstance(d, Retry)]
        if not again:
            return [], 0.0, verdict
        _, most_tried = max(again, key=lambda pair: pair[0].attempts)
        assert isinstance(most_tried, Retry)
        return [job for job, _ in again], most_tried.delay_s, verdict

    async def _permanent(self, unit: Unit, outcome: Permanent) -> Verdict:
        """Dead-letter the jobs Klaviyo refused; in a bulk job only the entry its pointer names."""
        refused = culprits(unit, outcome.pointer)
        decision = self.policy.decide(outcome, 0, 0.0, self._backoff)
        reason = decision.reason if isinstance(decision, Bury) else f"http_{outcome.status}"
        # error_summary already names the pointer in the detail; add it only when it does not.
        where = f" (at {outcome.pointer})" if outcome.pointer and outcome.pointer not in outcome.detail else ""
        detail = f"{outcome.reason}: {outcome.detail}{where}"
        # Klaviyo's refusal is the job's failure: counted, so a refused job shows 1 attempt.
        verdict = await self.bury(refused, reason, detail, status=outcome.status or None, failed=True)
        buried = {job.id for job in refused}
        innocent = [job for job in unit.jobs if job.id not in buried]
        if not innocent:
            return verdict
        # Sent with a bad neighbour; not their fault, so no attempt is counted.
        now = self._now()
        for epoch, ids in by_epoch(innocent).items():
            await self.store.retry(ids, now, "resend without a rejected neighbour", False, epoch=epoch)
        fields = {"reason": "rejected_neighbour", "status": None, "next_due": iso_time(now)}
        self._log_jobs(logging.INFO, "resending", innocent, **fields)
        return verdict._replace(note=f"{len(innocent)} other job(s) sent again without it")

    async def bury(
        self, jobs: list[Job], reason: str, detail: str, *, status: int | None = None, failed: bool = False
    ) -> Verdict:
        """Dead-letter ``jobs``; ``failed``: the failure that buries them counts as an attempt."""
        for epoch, ids in by_epoch(jobs).items():
            await self.store.bury(ids, reason, detail, self._now(), failed=failed, epoch=epoch)
        # Ids, reason and status only: the detail quotes Klaviyo's answer, which may echo data.
        attempts = max((job.attempts for job in jobs), default=0) + int(failed)
        self._log_jobs(logging.WARNING, "dead-lettered", jobs, reason=reason, status=status, attempts=attempts)
        for job in jobs:
            self.done(job)
            self.metrics.dead.labels(self.connection, reason.split(":")[0]).inc()
        if self.observer is not None:
            self.observer.buried(jobs, reason)
        return Verdict("dead-lettered", f"{reason}: {detail}", status)

    def _log_jobs(self, level: int, message: str, jobs: list[Job], **fields: object) -> None:
        """One log line about ``jobs`` of this connection: ids (at most 20, and the count), ``fields``."""
        ids = [job.id for job in jobs]
        log.log(level, message, extra={"connection": self.connection, **job_fields(ids), **fields})

    def blocked(self, job: Job, due: float) -> None:
        """The job failed and is due again at ``due``: its profile's later jobs wait (the barrier)."""
        self.barrier.failed(job.profile_key, job.id)
        self.blocker_due[job.id] = due

    def done(self, job: Job) -> None:
        """The job is settled for good: it blocks its profile no more."""
        self.barrier.done(job.profile_key, job.id)
        self.blocker_due.pop(job.id, None)


def _also_buried(jobs: list[Job]) -> str:
    """The note of a retry that dead-lettered some of its jobs (past their age or attempts)."""
    return f"{len(jobs)} job(s) dead-lettered instead (past max_age_s or max_attempts)" if jobs else ""


def by_epoch(jobs: Iterable[Job]) -> dict[int | None, list[int]]:
    """Job ids by the delivery lease epoch they were claimed under: a settle write carries its epoch."""
    groups: dict[int | None, list[int]] = {}
    for job in jobs:
        groups.setdefault(job.epoch, []).append(job.id)
    return groups
