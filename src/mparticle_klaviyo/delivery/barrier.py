"""Per-profile ordering barrier, after RudderStack's event-order barrier.

A job that was sent and failed (or was throttled) will be retried later. Until it succeeds or
is dead-lettered, every *later* job of the same profile waits, so Klaviyo sees a profile's
events in the order mParticle sent them even across retries.

Invariants (checked by tests/delivery/test_barrier.py, one test each, and its simulation):

1. A key is blocked exactly while it has a blocker: the smallest-id job of that key that
   failed and has neither been delivered nor dead-lettered since.
2. While a key is blocked, ``may_send`` is True only for jobs whose id is <= the blocker's
   (the blocker's own retry, and earlier jobs that were still in flight).
3. ``done`` on the blocker unblocks the key, unless a later job of the key failed too and is
   still unresolved: that job becomes the blocker. ``done`` on a job that is not failing
   changes nothing.
4. A failure of a job later than the blocker does not move the blocker: the earliest failure
   is what must be resolved first (the later one is remembered, see 3).
5. Jobs without a profile key (``""``) are never blocked.
6. ``admit`` (what the dispatcher runs on each claim, in id order) sends a blocked key's later
   failed jobs with its blocker's retry: each next failed job of the key, in id order, as long as
   the claim carries it right after the one before (no other job of the key between); all else
   of a blocked key is held. So a job is sent only after every earlier failing job of its key,
   in the same claim; one profile's failed jobs drain together instead of one per retry.

The barrier holds only blocked keys and their failed jobs, so it is as small as the set of
failing profiles; after a restart the dispatcher rebuilds it from the store's failing jobs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import NamedTuple


class Admission(NamedTuple):
    """A claim split by the barrier: job ids to send now, and held ones with their key's blocker."""

    send: list[int]
    held: dict[int, int]


class Barrier:
    """Which jobs may be sent now, given the profiles' failed jobs."""

    def __init__(self) -> None:
        # Every unresolved failed job per key, not only the blocker: when the blocker is
        # resolved, a later job of the key that also failed must become the blocker (invariant 1).
        self._failing: dict[str, set[int]] = {}
        self._blockers: dict[str, int] = {}

    def may_send(self, key: str, job_id: int) -> bool:
        """Whether job ``job_id`` of profile ``key`` may go out now (invariant 2)."""
        blocker = self._blockers.get(key)
        return blocker is None or job_id <= blocker

    def failed(self, key: str, job_id: int) -> None:
        """Job ``job_id`` failed and will be retried: block the key behind it (invariant 4)."""
        if not key:
            return  # jobs without a profile have no order to keep
        self._failing.setdefault(key, set()).add(job_id)
        blocker = self._blockers.get(key)
        if blocker is None or job_id < blocker:
            self._blockers[key] = job_id

    def done(self, key: str, job_id: int) -> None:
        """Job ``job_id`` was delivered or dead-lettered (invariant 3)."""
        failing = self._failing.get(key)
        if failing is None or job_id not in failing:
            return
        failing.discard(job_id)
        if not failing:
            del self._failing[key]
            del self._blockers[key]
        elif self._blockers[key] == job_id:
            self._blockers[key] = min(failing)

    def admit(self, claimed: Iterable[tuple[str, int]]) -> Admission:
        """Split a claim's (key, job id) pairs, in id order, into sent and held (invariant 6)."""
        send: list[int] = []
        held: dict[int, int] = {}
        retrying: dict[str, deque[int]] = {}  # key -> its failed jobs after those sent so far
        for key, job_id in claimed:
            if self.may_send(key, job_id):
                send.append(job_id)
                if self._blockers.get(key) == job_id:
                    retrying[key] = deque(self.failing(key)[1:])
            elif (after := retrying.get(key)) and after[0] == job_id:
                after.popleft()
                send.append(job_id)
            else:
                retrying.pop(key, None)  # a gap: the rest waits for the jobs before it
                held[job_id] = self._blockers[key]
        return Admission(send, held)

    def blocked(self) -> dict[str, int]:
        """Blocked keys and their blockers (a copy), for metrics and tests."""
        return dict(self._blockers)

    def failing(self, key: str) -> list[int]:
        """The unresolved failed jobs of ``key`` in id order (the blocker first)."""
        return sorted(self._failing.get(key, ()))

    def blocker(self, key: str) -> int | None:
        """The blocker of ``key``, or None when the key is not blocked."""
        return self._blockers.get(key)

    def __len__(self) -> int:
        return len(self._blockers)
