"""A profile's consent changes reach Klaviyo in the order they were accepted.

Subscriptions and unsubscriptions go to two endpoints, each with its own lane, so a profile's
subscribe and its later unsubscribe could otherwise be sent at once and applied in either
order. A consent job may start only while no job of the other kind is open (waiting to be
packed, or sent and not settled) for its profile; jobs of one kind go together. A failed job is
the barrier's business (``barrier.py``): it blocks the profile's later jobs until resolved.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from mparticle_klaviyo.jobs.plan import SUBSCRIPTION, UNSUBSCRIPTION
from mparticle_klaviyo.store.base import Job

CONSENT_KINDS = (SUBSCRIPTION, UNSUBSCRIPTION)


class ConsentOrder:
    """The consent jobs open per (profile, kind), and which claimed ones may start."""

    def __init__(self) -> None:
        self._open: Counter[tuple[str, str]] = Counter()

    def admit(self, jobs: Iterable[Job]) -> tuple[list[Job], list[Job]]:
        """Split jobs (in id order) into those that may start, now counted as open, and those held."""
        start: list[Job] = []
        held: list[Job] = []
        for job in jobs:
            if job.kind not in CONSENT_KINDS or not job.profile_key:
                start.append(job)
                continue
            other = UNSUBSCRIPTION if job.kind == SUBSCRIPTION else SUBSCRIPTION
            if self._open[(job.profile_key, other)]:
                held.append(job)
                continue
            self._open[(job.profile_key, job.kind)] += 1
            start.append(job)
        return start, held

    def settled(self, jobs: Iterable[Job]) -> None:
        """These jobs are no longer open (acked, retried later, buried or released)."""
        for job in jobs:
            key = (job.profile_key, job.kind)
            if self._open[key] > 0:
                self._open[key] -= 1
                if not self._open[key]:
                    del self._open[key]

    def __len__(self) -> int:
        return sum(self._open.values())
