"""Run a synchronous ``JobStore`` from asyncio, its calls on dedicated threads ("lanes").

SQLite: one lane. One thread means one writer, which is what SQLite wants (no SQLITE_BUSY
between our own writes), and it keeps blocking fsyncs off the event loop. PostgreSQL: two
lanes, ingest's enqueues on one and everything else (delivery's claims and settles, views) on
the other, each with a pooled connection of its own, so a claim never waits behind an
enqueue's group commit (or behind an enqueue waiting for another node's profile turn). The
server orders concurrent writers itself (store/postgres.py): two lanes of one node are no
different from two nodes.

With a ``StoreWatch``, an enqueue is refused (``StoreUnavailableError``) while the store has a
problem, and checked again after its commit: a commit into a file deleted meanwhile must not be
acknowledged. Failing store calls are reported to the watch (a lost PostgreSQL connection too).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import NamedTuple, TypeVar

from mparticle_klaviyo.store.base import DeadFilter, EnqueueResult, Job, JobStore, NewJob, StateCount
from mparticle_klaviyo.store.watch import StoreProblem, StoreUnavailableError, StoreWatch

T = TypeVar("T")


def _nothing() -> None:
    return None


class _Enqueue(NamedTuple):
    """One caller's enqueue, waiting for its group's commit."""

    jobs: Sequence[NewJob]
    now: float
    waiter: asyncio.Future[EnqueueResult]


def _fail_all(calls: list[_Enqueue], exc: BaseException | None) -> None:
    """Every waiting caller of ``calls`` gets ``exc`` (or is cancelled, if that is what it is)."""
    for call in calls:
        if call.waiter.done():
            continue
        if exc is None or isinstance(exc, asyncio.CancelledError):
            call.waiter.cancel()
        else:
            call.waiter.set_exception(exc)


class AsyncStore:
    """Awaitable versions of the ``JobStore`` methods the service uses."""

    def __init__(self, store: JobStore, watch: StoreWatch | None = None, *, lanes: int = 1) -> None:
        if lanes not in (1, 2):
            raise ValueError("lanes must be 1 (one writer: SQLite) or 2 (ingest and delivery apart)")
        self.store = store
        self.watch = watch
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="job-store")
        # Ingest's enqueues run on _thread; every other call on _delivery (the same thread with one lane).
        self._delivery = self._thread if lanes == 1 else ThreadPoolExecutor(1, thread_name_prefix="job-store-delivery")
        # Acks waiting for the store thread, by the lease epoch they were claimed under.
        self._acks: dict[int | None, list[int]] = {}
        self._ack_flush: asyncio.Task[dict[int | None, Exception]] | None = None
        self._enqueues: list[_Enqueue] = []
        self._enqueue_flush: asyncio.Task[None] | None = None

    async def _run(self, call: Callable[[], T], lane: ThreadPoolExecutor | None = None) -> T:
        """``call()`` on ``lane`` (the delivery lane unless given); a failure is reported to the watch."""
        try:
            return await asyncio.get_running_loop().run_in_executor(lane or self._delivery, call)
        except Exception as error:
            if self.watch is not None:
                self.watch.note_write_error(error)
            raise

    def problem(self) -> StoreProblem | None:
        """What keeps the store from taking jobs now, checked afresh (None: fine, or no watch)."""
        return None if self.watch is None else self.watch.check()

    def ensure_writable(self) -> None:
        """Raise ``StoreUnavailableError`` while the store has a problem."""
        problem = self.problem()
        if problem is not None:
            raise StoreUnavailableError(problem)

    async def enqueue(self, jobs: Sequence[NewJob], now: float) -> EnqueueResult:
        """See ``JobStore.enqueue``; returns once ``jobs`` are durably stored.

        Enqueues that arrive while the store thread is busy share one transaction
        (``enqueue_many``): one commit (one fsync) for all the requests waiting, and under load
        the waiting requests of one turn are answered together instead of one fsync apart.
        Raises ``StoreUnavailableError`` while the watch sees a problem, before or after the commit.
        """
        self.ensure_writable()
        waiter: asyncio.Future[EnqueueResult] = asyncio.get_running_loop().create_future()
        self._enqueues.append(_Enqueue(jobs, now, waiter))
        if self._enqueue_flush is None:
            self._enqueue_flush = asyncio.get_running_loop().create_task(self._flush_enqueues())
        # Shielded: a request cancelled while waiting (its client went away) must not cancel the
        # others' commit; its own jobs may still be stored, and a resend is deduplicated.
        return await asyncio.shield(waiter)

    async def _flush_enqueues(self) -> None:
        calls: list[_Enqueue] | None = None
        try:
            await self._run(_nothing, self._thread)  # our turn on the lane: enqueues gathered meanwhile join
            calls = self._take_enqueues()
            results = await self._run(
                partial(self.store.enqueue_many, [c.jobs for c in calls], max(c.now for c in calls)), self._thread
            )
        except BaseException as exc:
            # Every waiter of this group learns the outcome, even when cancelled before our turn.
            _fail_all(calls if calls is not None else self._take_enqueues(), exc)
            if not isinstance(exc, Exception):
                raise
            return
        problem = self.problem()
        if problem is not None:
            # Committed, but perhaps into a file deleted meanwhile: not acknowledged. The senders
            # retry, and a store that turns out fine deduplicates the resend.
            _fail_all(calls, StoreUnavailableError(problem))
            return
        for call, result in zip(calls, results, strict=True):
            if not call.waiter.done():
                call.waiter.set_result(result)

    def _take_enqueues(self) -> list[_Enqueue]:
        """The waiting enqueues as one group; those arriving later start the next group and flush."""
        calls, self._enqueues, self._enqueue_flush = self._enqueues, [], None
        return calls

    async def claim(
        self, connection: str, limit: int, lease_s: float, now: float, *, epoch: int | None = None
    ) -> list[Job]:
        """See ``JobStore.claim``."""
        return await self._run(partial(self.store.claim, connection, limit, lease_s, now, epoch=epoch))

    async def ack(self, ids: Sequence[int], *, epoch: int | None = None) -> None:
        """See ``JobStore.ack``; returns once ``ids`` are deleted.

        Acks that arrive while the store thread is busy share one transaction: one commit (one
        fsync) per delivered job would keep the thread so busy that ingest's enqueue, queued
        behind thousands of acks, would answer seconds late. Acks of several lease epochs are
        one transaction each (a refused epoch fails only its own callers' acks).
        """
        self._acks.setdefault(epoch, []).extend(ids)
        if self._ack_flush is None:
            self._ack_flush = asyncio.get_running_loop().create_task(self._flush_acks())
        # Shielded: a caller cancelled while waiting must not cancel the others' commit.
        flush = self._ack_flush
        results = await asyncio.shield(flush)
        error = results.get(epoch)
        if error is not None:
            raise error

    async def _flush_acks(self) -> dict[int | None, Exception]:
        """Ack what waits, one transaction per epoch; the error of each epoch whose ack failed."""
        try:
            await self._run(_nothing)  # our turn on the lane: acks gathered meanwhile join
        finally:
            acks, self._acks = self._acks, {}
            self._ack_flush = None
        errors: dict[int | None, Exception] = {}
        for epoch, ids in acks.items():
            try:
                await self._run(partial(self.store.ack, ids, epoch=epoch))
            except Exception as error:
                errors[epoch] = error
        return errors

    async def retry(
        self, ids: Sequence[int], run_at: float, error: str, failed: bool, *, epoch: int | None = None
    ) -> None:
        """See ``JobStore.retry``."""
        await self._run(partial(self.store.retry, ids, run_at, error, failed, epoch=epoch))

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
        """See ``JobStore.bury``."""
        await self._run(partial(self.store.bury, ids, reason, detail, now, failed=failed, epoch=epoch))

    async def release(self, ids: Sequence[int], *, epoch: int | None = None) -> None:
        """See ``JobStore.release``."""
        await self._run(partial(self.store.release, ids, epoch=epoch))

    async def release_expired(self, now: float) -> int:
        """See ``JobStore.release_expired``."""
        return await self._run(partial(self.store.release_expired, now))

    async def backlog(self, connection: str | None = None) -> int:
        """See ``JobStore.backlog``."""
        return await self._run(partial(self.store.backlog, connection))

    async def counts(self) -> list[StateCount]:
        """See ``JobStore.counts``."""
        return await self._run(self.store.counts)

    async def failing_jobs(self, connection: str) -> list[Job]:
        """See ``JobStore.failing_jobs``."""
        return await self._run(partial(self.store.failing_jobs, connection))

    async def erase(self, connection: str, profile_keys: Sequence[str], before_id: int, keep_kind: str) -> list[Job]:
        """See ``JobStore.erase``."""
        return await self._run(partial(self.store.erase, connection, profile_keys, before_id, keep_kind))

    async def dead(self, where: DeadFilter, limit: int = 100, offset: int = 0) -> list[Job]:
        """See ``JobStore.dead``."""
        return await self._run(partial(self.store.dead, where, limit, offset))

    async def on_thread(self, call: Callable[[JobStore], T]) -> T:
        """``call(store)`` on the delivery lane (several store calls that belong together)."""
        return await self._run(partial(call, self.store))

    async def forget_before(self, cutoff: float) -> int:
        """See ``JobStore.forget_before``."""
        return await self._run(partial(self.store.forget_before, cutoff))

    async def close(self) -> None:
        """Close the store once both lanes are idle, then stop the lanes and the watch."""
        try:
            if self._delivery is not self._thread:
                await self._run(_nothing)  # calls already on the delivery lane finish first
            await self._run(self.store.close, self._thread)
        finally:
            self._delivery.shutdown(wait=True)
            self._thread.shutdown(wait=True)
            if self.watch is not None:
                self.watch.close()
