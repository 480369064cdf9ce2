"""An in-memory JobStore: the executable reference of the contract, for tests only.

It passes tests/store/contract.py itself, and the stateful test compares real stores against it.
Several ``MemoryJobStore`` objects may share one ``MemoryData``, as stores on one file would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import msgspec

from mparticle_klaviyo.store.base import DeadFilter, EnqueueResult, Job, JobState, NewJob, StateCount
from mparticle_klaviyo.store.errors import StoreClosedError


@dataclass
class MemoryData:
    """What a store file holds: jobs by id, dedup memory, and the last id handed out."""

    jobs: dict[int, Job] = field(default_factory=dict)
    seen: dict[tuple[str, str], float] = field(default_factory=dict)
    last_id: int = 0


class MemoryJobStore:
    """A JobStore kept in a MemoryData; every rule is written the plainest way."""

    def __init__(self, data: MemoryData | None = None, *, dedup_window_s: float = 7 * 86400.0) -> None:
        self.data = data if data is not None else MemoryData()
        self.dedup_window_s = dedup_window_s
        self.closed = False

    def _jobs(self) -> dict[int, Job]:
        if self.closed:
            raise StoreClosedError()
        return self.data.jobs

    def _pick(self, ids: Iterable[int], allowed: Callable[[Job], bool]) -> list[Job]:
        jobs = self._jobs()
        return [jobs[job_id] for job_id in sorted(set(ids)) if job_id in jobs and allowed(jobs[job_id])]

    def _update(self, ids: Iterable[int], allowed: Callable[[Job], bool], **changes: object) -> None:
        for job in self._pick(ids, allowed):
            self.data.jobs[job.id] = msgspec.structs.replace(job, **changes)

    def enqueue(self, jobs: Sequence[NewJob], now: float) -> EnqueueResult:
        """Store the jobs whose keys are new, or nothing if one of them is invalid."""
        return self.enqueue_many([jobs], now)[0]

    def enqueue_many(self, calls: Sequence[Sequence[NewJob]], now: float) -> list[EnqueueResult]:
        """Enqueue each call in order; nothing at all if one job of any call is invalid."""
        self._jobs()
        for job in (job for jobs in calls for job in jobs):
            _validate(job)
        return [self._store_new(jobs, now) for jobs in calls]

    def _store_new(self, jobs: Sequence[NewJob], now: float) -> EnqueueResult:
        cutoff = now - self.dedup_window_s
        stored = 0
        for job in jobs:
            pair = (job.connection, job.key)
            first_seen = self.data.seen.get(pair)
            if first_seen is not None and first_seen >= cutoff:
                continue
            self.data.seen[pair] = now
            self.data.last_id += 1
            self.data.jobs[self.data.last_id] = _stored(self.data.last_id, job, now)
            stored += 1
        return EnqueueResult(stored=stored, duplicates=len(jobs) - stored)

    def claim(self, connection: str, limit: int, lease_s: float, now: float, *, epoch: int | None = None) -> list[Job]:
        """Lease the oldest due READY jobs of ``connection``."""
        assert epoch is None, "the model has no delivery leases"
        due = [
            job
            for job in sorted(self._jobs().values(), key=_job_id)
            if job.connection == connection and job.state == JobState.READY and job.run_at <= now
        ]
        chosen = due[: max(0, limit)]
        self._update([job.id for job in chosen], _any, state=JobState.LEASED, lease_until=now + lease_s)
        return [self.data.jobs[job.id] for job in chosen]

    def ack(self, ids: Sequence[int], *, epoch: int | None = None) -> None:
        """Delete the listed jobs that are not dead."""
        assert epoch is None, "the model has no delivery leases"
        for job in self._pick(ids, _alive):
            del self.data.jobs[job.id]

    def retry(self, ids: Sequence[int], run_at: float, error: str, failed: bool, *, epoch: int | None = None) -> None:
        """Reschedule live jobs, counting an attempt or a throttle."""
        assert epoch is None, "the model has no delivery leases"
        for job in self._pick(ids, _alive):
            self.data.jobs[job.id] = msgspec.structs.replace(
                job,
                state=JobState.READY,
                lease_until=None,
                run_at=run_at,
                last_error=error,
                attempts=job.attempts + int(failed),
                throttles=job.throttles + int(not failed),
            )

    def bury(
        self,
        ids: Sequence[int],
        reason: str,
        detail: str,
        now: float,
        *,
        failed: bool = False,
        epoch: int | None = None,
    ) -> None:
        """Move live jobs to DEAD, counting an attempt when ``failed``."""
        assert epoch is None, "the model has no delivery leases"
        for job in self._pick(ids, _alive):
            self.data.jobs[job.id] = msgspec.structs.replace(
                job,
                state=JobState.DEAD,
                lease_until=None,
                dead_reason=reason,
                last_error=detail,
                attempts=job.attempts + int(failed),
            )

    def release(self, ids: Sequence[int], *, epoch: int | None = None) -> None:
        """Return leased jobs to READY."""
        assert epoch is None, "the model has no delivery leases"
        self._update(ids, _leased, state=JobState.READY, lease_until=None)

    def release_expired(self, now: float) -> int:
        """Return jobs whose lease ended at or before ``now`` to READY."""
        expired = [job.id for job in self._jobs().values() if _leased(job) and (job.lease_until or 0.0) <= now]
        self._update(expired, _any, state=JobState.READY, lease_until=None)
        return len(expired)

    def connections(self) -> list[str]:
        """Connections with jobs in any state."""
        return sorted({job.connection for job in self._jobs().values()})

    def counts(self) -> list[StateCount]:
        """Jobs per connection and state, with the earliest created_at of each group."""
        groups: dict[tuple[str, JobState], list[Job]] = {}
        for job in self._jobs().values():
            groups.setdefault((job.connection, job.state), []).append(job)
        return [
            StateCount(connection, state, len(group), min(job.created_at for job in group))
            for (connection, state), group in sorted(groups.items())
        ]

    def backlog(self, connection: str | None = None) -> int:
        """READY plus LEASED jobs."""
        return sum(1 for job in self._jobs().values() if _alive(job) and connection in (None, job.connection))

    def dead(self, where: DeadFilter, limit: int = 100, offset: int = 0) -> list[Job]:
        """Dead jobs matching ``where`` by id, one page."""
        matching = self._matching(where)
        start = max(0, offset)
        return matching[start : start + max(0, limit)]

    def redrive(self, where: DeadFilter, now: float) -> int:
        """Make matching dead jobs READY as new."""
        ids = [job.id for job in self._matching(where)]
        self._update(ids, _any, state=JobState.READY, attempts=0, throttles=0, run_at=now, dead_reason=None)
        return len(ids)

    def purge(self, where: DeadFilter) -> int:
        """Delete matching dead jobs."""
        ids = [job.id for job in self._matching(where)]
        for job_id in ids:
            del self.data.jobs[job_id]
        return len(ids)

    def failing_jobs(self, connection: str) -> list[Job]:
        """READY jobs of ``connection`` with attempts or throttles, by id."""
        return [
            job
            for job in sorted(self._jobs().values(), key=_job_id)
            if job.connection == connection and job.state == JobState.READY and (job.attempts or job.throttles)
        ]

    def erase(self, connection: str, profile_keys: Sequence[str], before_id: int, keep_kind: str) -> list[Job]:
        """Delete READY and DEAD jobs of these profiles below ``before_id``, except ``keep_kind``."""
        gone = [
            job
            for job in sorted(self._jobs().values(), key=_job_id)
            if job.connection == connection
            and job.id < before_id
            and job.state != JobState.LEASED
            and job.kind != keep_kind
            and job.profile_key in profile_keys
        ]
        for job in gone:
            del self.data.jobs[job.id]
        return gone

    def forget_before(self, cutoff: float) -> int:
        """Forget keys first seen before ``cutoff``."""
        self._jobs()
        old = [pair for pair, first_seen in self.data.seen.items() if first_seen < cutoff]
        for pair in old:
            del self.data.seen[pair]
        return len(old)

    def close(self) -> None:
        """Refuse further calls (the data stays, as a file would)."""
        self.closed = True

    def _matching(self, where: DeadFilter) -> list[Job]:
        return [job for job in sorted(self._jobs().values(), key=_job_id) if _matches(job, where)]


def _matches(job: Job, where: DeadFilter) -> bool:
    return (
        job.state == JobState.DEAD
        and where.connection in (None, job.connection)
        and (where.reason is None or f":{where.reason}:" in f":{job.dead_reason}:")
        and (where.ids is None or job.id in where.ids)
    )


def _validate(job: NewJob) -> None:
    texts: Iterable[object] = (job.connection, job.key, job.profile_key, job.kind)
    if not all(isinstance(text, str) for text in texts) or not isinstance(job.payload, bytes):
        raise TypeError(f"invalid job {job!r}")


def _stored(job_id: int, job: NewJob, now: float) -> Job:
    fields = {name: getattr(job, name) for name in ("connection", "key", "profile_key", "kind", "payload", "run_at")}
    return Job(id=job_id, state=JobState.READY, attempts=0, throttles=0, created_at=now, **fields)


def _job_id(job: Job) -> int:
    return job.id


def _any(job: Job) -> bool:
    return True


def _alive(job: Job) -> bool:
    return job.state != JobState.DEAD


def _leased(job: Job) -> bool:
    return job.state == JobState.LEASED
