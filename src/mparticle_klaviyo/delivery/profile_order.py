"""What of a profile may be sent at once, so that Klaviyo applies it in the order it was accepted.

Jobs of one profile go to several endpoints, each with its own lane, so two of them could be
sent at once and applied in either order. That is harmless for events, not for:

* consent: a subscribe and a later unsubscribe (or the reverse) must not be open together;
* erasure: it waits until nothing else of its profile is open (what was sent before it is then
  deleted with the profile), and while it is open nothing of its profile starts (what comes
  after it must not be deleted by it).

A job is open from its claim until it is settled (acked, retried later, buried). Jobs held here
go back to the store for a moment. A failed job is the barrier's business (``barrier.py``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from mparticle_klaviyo.jobs.erasure import ERASURE
from mparticle_klaviyo.jobs.plan import SUBSCRIPTION, UNSUBSCRIPTION
from mparticle_klaviyo.store.base import Job

_OTHER_CONSENT = {SUBSCRIPTION: UNSUBSCRIPTION, UNSUBSCRIPTION: SUBSCRIPTION}


class ProfileOrder:
    """The jobs open per (profile, kind), and which claimed ones may start."""

    def __init__(self) -> None:
        self._open: Counter[tuple[str, str]] = Counter()
        self._profiles: Counter[str] = Counter()

    def admit(self, jobs: Iterable[Job]) -> tuple[list[Job], list[Job]]:
        """Split jobs (in id order) into those that may start, now open, and those held."""
        start: list[Job] = []
        held: list[Job] = []
        for job in jobs:
            if job.profile_key and self._must_wait(job):
                held.append(job)
                continue
            self._open[(job.profile_key, job.kind)] += 1
            self._profiles[job.profile_key] += 1
            start.append(job)
        return start, held

    def _must_wait(self, job: Job) -> bool:
        profile = job.profile_key
        if self._open[(profile, ERASURE)]:
            return True
        if job.kind == ERASURE:
            return self._profiles[profile] > 0
        other = _OTHER_CONSENT.get(job.kind)
        return other is not None and self._open[(profile, other)] > 0

    def settled(self, jobs: Iterable[Job]) -> None:
        """These jobs are no longer open (acked, retried later, buried or released)."""
        for job in jobs:
            key = (job.profile_key, job.kind)
            if self._open[key] <= 0:
                continue
            self._open[key] -= 1
            self._profiles[job.profile_key] -= 1
            if not self._open[key]:
                del self._open[key]
            if not self._profiles[job.profile_key]:
                del self._profiles[job.profile_key]

    def __len__(self) -> int:
        return sum(self._open.values())
