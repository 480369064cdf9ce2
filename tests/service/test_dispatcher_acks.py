"""The dispatcher's acks through ``AsyncStore``: acks settled together share one commit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.base import NewJob
from mparticle_klaviyo.store.errors import StoreClosedError
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.service.e2e_helpers import run_async


class CountingStore(SqliteJobStore):
    """The real SQLite store, counting its ack transactions."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.ack_calls: list[list[int]] = []

    def ack(self, ids: Sequence[int]) -> None:
        self.ack_calls.append(list(ids))
        super().ack(ids)


async def _claimed(store: AsyncStore, count: int) -> list[int]:
    jobs = [
        NewJob(connection="acme", key=f"k{n}", profile_key=f"p{n}", kind="event", payload=b"{}") for n in range(count)
    ]
    await store.enqueue(jobs, time.time())
    return [job.id for job in await store.claim("acme", count, 30.0, time.time())]


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
