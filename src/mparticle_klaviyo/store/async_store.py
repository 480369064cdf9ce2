"""The awaitable job store the service depends on: ingest, delivery and the console see only this.

``AsyncStore`` (store/aio.py) implements it over either synchronous store, SQLite or PostgreSQL;
the contract of each call is ``JobStore``'s (store/base.py), plus group commits and health.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from mparticle_klaviyo.store.base import DeadFilter, EnqueueResult, Job, JobStore, NewJob, StateCount
from mparticle_klaviyo.store.watch import StoreProblem

T = TypeVar("T")


class AsyncJobStore(Protocol):
    """Awaitable ``JobStore`` calls, the store's health, and a way to run several calls together."""

    def problem(self) -> StoreProblem | None:
        """What keeps the store from taking jobs now (None: fine)."""
        ...

    def ensure_writable(self) -> None:
        """Raise ``StoreUnavailableError`` while the store has a problem."""
        ...

    async def enqueue(self, jobs: Sequence[NewJob], now: float) -> EnqueueResult:
        """Store ``jobs`` durably (deduplicated); returns once committed."""
        ...

    async def claim(
        self, connection: str, limit: int, lease_s: float, now: float, *, epoch: int | None = None
    ) -> list[Job]:
        """Lease up to ``limit`` ready jobs of ``connection``, oldest first."""
        ...

    async def ack(self, ids: Sequence[int], *, epoch: int | None = None) -> None:
        """Delete delivered jobs; returns once committed."""
        ...

    async def retry(
        self, ids: Sequence[int], run_at: float, error: str, failed: bool, *, epoch: int | None = None
    ) -> None:
        """Make jobs ready again at ``run_at``, counting an attempt when ``failed``."""
        ...

    async def bury(
        self,
        ids: Sequence[int],
        reason: str,
        detail: str,
        now: float,
        *,
        failed: bool = False,
        epoch: int | None = None,
    ) -> None:
        """Move jobs to the dead letters for ``reason``."""
        ...

    async def release(self, ids: Sequence[int], *, epoch: int | None = None) -> None:
        """Give leased jobs back, ready now, nothing counted."""
        ...

    async def release_expired(self, now: float) -> int:
        """Make jobs whose lease expired ready again; how many."""
        ...

    async def backlog(self, connection: str | None = None) -> int:
        """Jobs not yet delivered (ready or leased), of one connection or all."""
        ...

    async def counts(self) -> list[StateCount]:
        """Jobs by connection, state and kind."""
        ...

    async def failing_jobs(self, connection: str) -> list[Job]:
        """``connection``'s ready jobs that already failed or were throttled, by id."""
        ...

    async def erase(self, connection: str, profile_keys: Sequence[str], before_id: int, keep_kind: str) -> list[Job]:
        """Delete the profiles' ready and dead jobs before ``before_id`` (an erasure); the deleted."""
        ...

    async def dead(self, where: DeadFilter, limit: int = 100, offset: int = 0) -> list[Job]:
        """Dead letters matching ``where``."""
        ...

    async def on_thread(self, call: Callable[[JobStore], T]) -> T:
        """``call(store)`` with the synchronous store (several calls that belong together)."""
        ...

    async def forget_before(self, cutoff: float) -> int:
        """Forget remembered keys first seen before ``cutoff``; how many."""
        ...

    async def close(self) -> None:
        """Close the store once its calls in flight are done."""
        ...
