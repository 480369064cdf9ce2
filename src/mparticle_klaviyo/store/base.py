"""The job store contract: durable, deduplicated jobs with leases, delayed retries and dead letters.

One row per job. A job is one mParticle event (or one consent subscription) of one connection,
stored as normalised input so that delivery maps it with the code of the day (a mapping fix
plus a redrive repairs dead letters).

Life of a job::

    enqueue -> READY --claim--> LEASED --ack--> (deleted)
                 ^                 |  \\--bury--> DEAD --redrive--> READY
                 |                 |                   \\--purge--> (deleted)
                 +--retry/defer----+
                 +--lease expired (crash) or release (shutdown)

Invariants every implementation keeps (tests/store/contract.py checks them):

* ``enqueue`` is atomic and durable when it returns: all jobs of the call are stored, or none.
  ``enqueue_many`` is the same for several calls at once: it answers as if they were enqueued
  one after another, and stores all of them or none.
* A (connection, key) pair is enqueued at most once while it is remembered (``dedup_window_s``
  after its first enqueue), even after the job was delivered and deleted.
* ``claim`` returns READY jobs of one connection whose ``run_at <= now``, oldest id first, and
  leases them until ``now + lease_s``; a leased job is claimed by nobody else until it is acked,
  retried, buried, released, or its lease expires and ``release_expired`` returns it to READY.
* ``retry`` with ``failed=True`` counts an attempt; with ``failed=False`` (a 429 or a barrier
  deferral) it counts a throttle and leaves ``attempts`` alone. ``bury`` with ``failed=True``
  counts the failure that buries the job as an attempt too, so ``attempts`` is every failure.
* A ``DeadFilter`` reason matches a dead reason that equals it or is made of it and other
  ``:``-separated parts: ``http_503``, ``retries_exhausted`` and ``retries_exhausted:http_503``
  all match ``retries_exhausted:http_503``; ``http_50`` does not.
* A profile's jobs are claimed in the order they were accepted (their enqueues committed), even
  when several processes enqueue that profile at once: per (connection, profile key), ids grow
  with commit order. SQLite has one writer, so all ids do; PostgreSQL orders each profile's
  enqueues (store/postgres.py). Between different profiles, concurrent enqueues may commit out
  of id order.
* ``epoch`` (PostgreSQL, many nodes): a claim with the epoch of a delivery lease records it on
  the jobs; a claim or settle (ack, retry, bury, release) with an epoch is refused with
  ``LeaseLostError`` unless that lease is still current, and touches only jobs claimed under it.
  SQLite has one deliverer per file (``OwnerLock``) and takes no epoch (``None`` only).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import msgspec


class JobState(enum.IntEnum):
    """Where a job is in its life."""

    READY = 0
    LEASED = 1
    DEAD = 3


class NewJob(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A job to enqueue."""

    # gc=False: strings and bytes only, so never part of a reference cycle; ingest makes one
    # per event and the collector need not walk them.

    connection: str
    key: str
    profile_key: str
    kind: str
    payload: bytes
    run_at: float = 0.0


class Job(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A stored job."""

    # gc=False: scalars, strings and bytes only (see NewJob); delivery holds thousands.

    id: int
    connection: str
    key: str
    profile_key: str
    kind: str
    payload: bytes
    state: JobState
    attempts: int
    throttles: int
    created_at: float
    run_at: float
    lease_until: float | None = None
    last_error: str | None = None
    dead_reason: str | None = None
    # The delivery lease it was claimed under (PostgreSQL, many nodes); its settles carry it.
    epoch: int | None = None


class EnqueueResult(msgspec.Struct, frozen=True):
    """How many jobs of one enqueue call were stored, and how many were repeats."""

    stored: int
    duplicates: int


class StateCount(msgspec.Struct, frozen=True):
    """Backlog of one connection in one state, with the age of its oldest job."""

    connection: str
    state: JobState
    count: int
    oldest_created_at: float | None


class DeadFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which dead jobs a DLQ command applies to (all when every field is None).

    ``reason`` matches whole ``:``-separated parts of a dead reason (see the module docstring).
    """

    connection: str | None = None
    reason: str | None = None
    ids: tuple[int, ...] | None = None


class JobStore(Protocol):
    """Durable job storage; every method is synchronous and safe to call from one thread."""

    def enqueue(self, jobs: Sequence[NewJob], now: float) -> EnqueueResult:
        """Store new jobs in one durable transaction, skipping (connection, key) repeats."""
        ...

    def enqueue_many(self, calls: Sequence[Sequence[NewJob]], now: float) -> list[EnqueueResult]:
        """``enqueue`` each of ``calls`` in order, all in one durable transaction (group commit).

        The results are those of enqueuing the calls one after another; if one call fails,
        nothing of any call is stored.
        """
        ...

    def claim(self, connection: str, limit: int, lease_s: float, now: float, *, epoch: int | None = None) -> list[Job]:
        """Lease up to ``limit`` due READY jobs of ``connection``, oldest first."""
        ...

    def ack(self, ids: Sequence[int], *, epoch: int | None = None) -> None:
        """Delete delivered jobs."""
        ...

    def retry(self, ids: Sequence[int], run_at: float, error: str, failed: bool, *, epoch: int | None = None) -> None:
        """Return leased jobs to READY, due at ``run_at``; count an attempt or a throttle."""
        ...

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
        """Move live jobs to DEAD with a reason code and Klaviyo's answer; ``failed`` counts an attempt."""
        ...

    def release(self, ids: Sequence[int], *, epoch: int | None = None) -> None:
        """Return leased jobs to READY as they were (graceful shutdown); counts nothing."""
        ...

    def release_expired(self, now: float) -> int:
        """Return jobs whose lease has expired to READY (crash recovery); how many."""
        ...

    def connections(self) -> list[str]:
        """Connections that have jobs in any state."""
        ...

    def counts(self) -> list[StateCount]:
        """Backlog per connection and state."""
        ...

    def backlog(self, connection: str | None = None) -> int:
        """READY plus LEASED jobs (of one connection, or all): what is still to deliver."""
        ...

    def dead(self, where: DeadFilter, limit: int = 100, offset: int = 0) -> list[Job]:
        """Dead jobs matching ``where``, oldest first."""
        ...

    def redrive(self, where: DeadFilter, now: float) -> int:
        """Make matching dead jobs READY again with attempts reset; how many."""
        ...

    def purge(self, where: DeadFilter) -> int:
        """Delete matching dead jobs; how many."""
        ...

    def failing_jobs(self, connection: str) -> list[Job]:
        """READY jobs that already failed or were throttled (attempts or throttles > 0), by id.

        The delivery barrier rebuilds itself from these after a restart.
        """
        ...

    def erase(self, connection: str, profile_keys: Sequence[str], before_id: int, keep_kind: str) -> list[Job]:
        """Delete the READY and DEAD jobs (not LEASED ones, nor jobs of ``keep_kind``) of
        ``connection`` whose profile key is one of ``profile_keys`` and whose id is below
        ``before_id``: what an erasure drops. Returns the deleted jobs, by id."""
        ...

    def forget_before(self, cutoff: float) -> int:
        """Drop dedup memory of keys first seen before ``cutoff``; how many."""
        ...

    def close(self) -> None:
        """Close connections; further calls are errors."""
        ...


@runtime_checkable
class LeaseStore(Protocol):
    """Delivery leases per Klaviyo account, for stores many nodes share (PostgreSQL)."""

    def hold_leases(
        self, node: str, accounts: Mapping[str, Sequence[str]], held: Mapping[str, int], now: float, ttl: float
    ) -> dict[str, int]:
        """One heartbeat of ``node``: renew, balance and take leases; those held now, account -> epoch."""
        ...

    def give_up_leases(self, node: str, accounts: Sequence[str]) -> None:
        """Expire ``node``'s leases of ``accounts`` now and forget the node (a graceful stop)."""
        ...


@runtime_checkable
class ClusterStore(Protocol):
    """What a store many nodes share says about them: the live nodes and who holds which lease."""

    def live_nodes(self, now: float) -> list[tuple[str, float]]:
        """The nodes whose last heartbeat has not expired at ``now``: (node, expires_at), by node."""
        ...

    def lease_holders(self) -> list[tuple[str, str, int, float]]:
        """Every account's lease row: (account, node, epoch, expires_at), by account."""
        ...
