"""``AsyncStore``: enqueues, and acks, waiting for the store thread share one transaction."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg
import pytest

from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.base import EnqueueResult, NewJob
from mparticle_klaviyo.store.errors import StoreClosedError
from mparticle_klaviyo.store.factory import store_lanes
from mparticle_klaviyo.store.postgres import PostgresJobStore, _take_turns
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.service.e2e_helpers import run_async
from tests.store.helpers import LEASE_S, T0, A, hold_store_thread, keys, new_job, new_jobs


class CountingStore(SqliteJobStore):
    """The real SQLite store, recording each enqueue and ack transaction's calls."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.transactions: list[list[list[str]]] = []
        self.ack_calls: list[list[int]] = []

    def ack(self, ids: Sequence[int], *, epoch: int | None = None) -> None:
        self.ack_calls.append(list(ids))
        super().ack(ids, epoch=epoch)

    def enqueue_many(self, calls: Sequence[Sequence[NewJob]], now: float) -> list[EnqueueResult]:
        self.transactions.append([[job.key for job in jobs] for jobs in calls])
        return super().enqueue_many(calls, now)


def test_enqueues_waiting_together_are_committed_in_one_transaction(tmp_path: Path) -> None:
    async def scenario() -> None:
        inner = CountingStore(tmp_path / "jobs.sqlite3")
        store = AsyncStore(inner)
        release = hold_store_thread(store)
        waiting = [asyncio.create_task(store.enqueue(new_jobs(f"k{n}a", f"k{n}b"), time.time())) for n in range(20)]
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(*waiting)
        assert results == [EnqueueResult(stored=2, duplicates=0)] * 20
        assert inner.transactions == [[[f"k{n}a", f"k{n}b"] for n in range(20)]]
        assert await store.backlog() == 40
        await store.close()

    run_async(scenario())


def test_each_caller_gets_its_own_result_when_calls_repeat_a_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = AsyncStore(SqliteJobStore(tmp_path / "jobs.sqlite3"))
        release = hold_store_thread(store)
        first = asyncio.create_task(store.enqueue([new_job("k1", payload=b"first")], time.time()))
        second = asyncio.create_task(store.enqueue([new_job("k1", payload=b"second"), new_job("k2")], time.time()))
        await asyncio.sleep(0.05)
        release.set()
        assert await first == EnqueueResult(stored=1, duplicates=0)
        assert await second == EnqueueResult(stored=1, duplicates=1)
        claimed = await store.claim(A, 10, 30.0, time.time())
        assert [job.payload for job in claimed if job.key == "k1"] == [b"first"]
        await store.close()

    run_async(scenario())


def test_an_enqueue_returns_only_after_its_jobs_are_committed(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = AsyncStore(SqliteJobStore(tmp_path / "jobs.sqlite3"))
        await store.enqueue(new_jobs("k1", "k2"), time.time())
        other_reader = SqliteJobStore(tmp_path / "jobs.sqlite3")
        assert other_reader.backlog() == 2
        other_reader.close()
        await store.close()

    run_async(scenario())


def test_an_enqueue_after_a_commit_gets_a_transaction_of_its_own(tmp_path: Path) -> None:
    async def scenario() -> None:
        inner = CountingStore(tmp_path / "jobs.sqlite3")
        store = AsyncStore(inner)
        await store.enqueue(new_jobs("k1"), time.time())
        await store.enqueue(new_jobs("k2"), time.time())
        assert inner.transactions == [[["k1"]], [["k2"]]]
        await store.close()

    run_async(scenario())


def test_a_cancelled_enqueue_does_not_cancel_the_commit_it_shares(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = AsyncStore(SqliteJobStore(tmp_path / "jobs.sqlite3"))
        release = hold_store_thread(store)
        cancelled = asyncio.create_task(store.enqueue(new_jobs("k1"), time.time()))
        kept = asyncio.create_task(store.enqueue(new_jobs("k2"), time.time()))
        await asyncio.sleep(0.05)
        cancelled.cancel()
        release.set()
        assert await kept == EnqueueResult(stored=1, duplicates=0)
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        # The cancelled caller's jobs were handed over already: stored, and a resend is a duplicate.
        assert await store.backlog() == 2
        assert await store.enqueue(new_jobs("k1"), time.time()) == EnqueueResult(stored=0, duplicates=1)
        await store.close()

    run_async(scenario())


def test_a_failed_commit_raises_in_every_caller_and_stores_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = AsyncStore(SqliteJobStore(tmp_path / "jobs.sqlite3"))
        release = hold_store_thread(store)
        invalid = NewJob(connection=A, key="bad", profile_key="p", kind="event", payload=None)  # type: ignore[arg-type]
        good = asyncio.create_task(store.enqueue(new_jobs("k1"), time.time()))
        bad = asyncio.create_task(store.enqueue([invalid], time.time()))
        await asyncio.sleep(0.05)
        release.set()
        results = await asyncio.gather(good, bad, return_exceptions=True)
        assert all(isinstance(result, Exception) for result in results), results
        assert await store.backlog() == 0
        # The next enqueue starts a new group and succeeds.
        assert await store.enqueue(new_jobs("k1"), time.time()) == EnqueueResult(stored=1, duplicates=0)
        await store.close()

    run_async(scenario())


class FailingFirstStore(SqliteJobStore):
    """Its first enqueue transaction waits for ``go`` and then fails, as a full disk would."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.entered = threading.Event()
        self.go = threading.Event()
        self.failed_once = False

    def enqueue_many(self, calls: Sequence[Sequence[NewJob]], now: float) -> list[EnqueueResult]:
        if not self.failed_once:
            self.failed_once = True
            self.entered.set()
            self.go.wait(10)
            raise OSError("disk full")
        return super().enqueue_many(calls, now)


def test_a_failed_group_fails_only_its_own_callers_not_the_next_group(tmp_path: Path) -> None:
    async def scenario() -> None:
        inner = FailingFirstStore(tmp_path / "jobs.sqlite3")
        store = AsyncStore(inner)
        first = asyncio.create_task(store.enqueue(new_jobs("k1"), time.time()))
        await asyncio.get_running_loop().run_in_executor(None, inner.entered.wait, 10)
        second = asyncio.create_task(store.enqueue(new_jobs("k2"), time.time()))  # the next group
        await asyncio.sleep(0.05)
        inner.go.set()
        with pytest.raises(OSError, match="disk full"):
            await first
        assert await second == EnqueueResult(stored=1, duplicates=0)
        assert await store.enqueue(new_jobs("k3"), time.time()) == EnqueueResult(stored=1, duplicates=0)
        assert await store.backlog() == 2
        await store.close()

    run_async(scenario())


def test_an_enqueue_on_a_closed_store_raises(tmp_path: Path) -> None:
    async def scenario() -> None:
        inner = SqliteJobStore(tmp_path / "jobs.sqlite3")
        store = AsyncStore(inner)
        inner.close()
        results = await asyncio.gather(
            *(store.enqueue(new_jobs(f"k{n}"), time.time()) for n in range(3)), return_exceptions=True
        )
        assert [type(result) for result in results] == [StoreClosedError] * 3
        await store.close()

    run_async(scenario())


async def _claimed(store: AsyncStore, count: int) -> list[int]:
    jobs = [NewJob(connection=A, key=f"k{n}", profile_key=f"p{n}", kind="event", payload=b"{}") for n in range(count)]
    await store.enqueue(jobs, time.time())
    return [job.id for job in await store.claim(A, count, 30.0, time.time())]


def test_acks_made_together_are_committed_in_one_transaction(tmp_path: Path) -> None:
    async def scenario() -> None:
        inner = CountingStore(tmp_path / "jobs.sqlite3")
        store = AsyncStore(inner)
        ids = await _claimed(store, 50)
        await asyncio.gather(*(store.ack([job_id]) for job_id in ids))
        assert len(inner.ack_calls) == 1
        assert sorted(inner.ack_calls[0]) == ids
        assert await store.backlog() == 0
        await store.close()

    run_async(scenario())


def test_an_ack_made_after_a_commit_gets_a_commit_of_its_own(tmp_path: Path) -> None:
    async def scenario() -> None:
        inner = CountingStore(tmp_path / "jobs.sqlite3")
        store = AsyncStore(inner)
        first, second = await _claimed(store, 2)
        await store.ack([first])
        await store.ack([second])
        assert inner.ack_calls == [[first], [second]]
        assert await store.backlog() == 0
        await store.close()

    run_async(scenario())


def test_an_ack_returns_only_after_its_jobs_are_deleted(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = AsyncStore(SqliteJobStore(tmp_path / "jobs.sqlite3"))
        ids = await _claimed(store, 3)
        await store.ack(ids[:2])
        other_reader = SqliteJobStore(tmp_path / "jobs.sqlite3")
        assert other_reader.backlog() == 1
        other_reader.close()
        await store.close()

    run_async(scenario())


def test_a_cancelled_ack_does_not_cancel_the_commit_it_shares(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = AsyncStore(SqliteJobStore(tmp_path / "jobs.sqlite3"))
        first, second = await _claimed(store, 2)
        cancelled = asyncio.create_task(store.ack([first]))
        kept = asyncio.create_task(store.ack([second]))
        await asyncio.sleep(0)
        cancelled.cancel()
        await kept
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert await store.backlog() == 0
        await store.close()

    run_async(scenario())


def test_a_failed_ack_commit_raises_in_every_caller(tmp_path: Path) -> None:
    async def scenario() -> None:
        inner = SqliteJobStore(tmp_path / "jobs.sqlite3")
        store = AsyncStore(inner)
        first, second = await _claimed(store, 2)
        inner.close()
        results = await asyncio.gather(store.ack([first]), store.ack([second]), return_exceptions=True)
        assert [type(result) for result in results] == [StoreClosedError, StoreClosedError]
        await store.close()  # closing the closed store again is harmless; this stops the thread

    run_async(scenario())


def test_lanes_other_than_one_or_two_are_refused(tmp_path: Path) -> None:
    inner = SqliteJobStore(tmp_path / "jobs.sqlite3")
    try:
        with pytest.raises(ValueError, match="lanes"):
            AsyncStore(inner, lanes=3)
    finally:
        inner.close()


def profile_job(key: str) -> NewJob:
    """A job of profile p."""
    return NewJob(connection=A, key=key, profile_key="p", kind="event", payload=b"{}")


def test_on_postgresql_a_claim_does_not_wait_behind_an_enqueue_that_waits_for_the_database(
    postgres_url: str,
) -> None:
    """Another node holds the turn of profile p: our enqueue of p waits, our claim must not."""

    async def scenario() -> None:
        inner = PostgresJobStore(postgres_url)
        store = AsyncStore(inner, lanes=store_lanes(postgres_url))
        try:
            inner.enqueue([new_job("ready")], T0)
            with psycopg.connect(postgres_url) as other_node, other_node.cursor() as cursor:
                _take_turns(cursor, [profile_job("other")], T0)
                waiting = asyncio.create_task(store.enqueue([profile_job("late")], T0))
                await asyncio.sleep(0.3)
                assert not waiting.done()
                claimed = await asyncio.wait_for(store.claim(A, 10, LEASE_S, T0), timeout=3)
                assert keys(claimed) == ["ready"]
                other_node.rollback()
            assert await asyncio.wait_for(waiting, timeout=5) == EnqueueResult(stored=1, duplicates=0)
        finally:
            await store.close()

    run_async(scenario())
