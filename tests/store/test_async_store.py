"""``AsyncStore`` is an ``AsyncJobStore``: every call of the protocol, with the same signature."""

from __future__ import annotations

import inspect
from pathlib import Path

from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.async_store import AsyncJobStore
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.service.e2e_helpers import run_async


def protocol_calls() -> list[str]:
    return [name for name in vars(AsyncJobStore) if not name.startswith("_") and callable(getattr(AsyncJobStore, name))]


def test_async_store_has_every_call_of_the_protocol_with_its_signature() -> None:
    names = protocol_calls()
    assert {"enqueue", "claim", "ack", "retry", "bury", "dead", "on_thread", "close"} <= set(names)
    for name in names:
        wanted = inspect.signature(getattr(AsyncJobStore, name))
        assert inspect.signature(getattr(AsyncStore, name)) == wanted, name
        assert inspect.iscoroutinefunction(getattr(AsyncStore, name)) == inspect.iscoroutinefunction(
            getattr(AsyncJobStore, name)
        ), name


def test_the_service_can_hold_an_async_store_as_the_protocol(tmp_path: Path) -> None:
    async def scenario() -> None:
        store: AsyncJobStore = AsyncStore(SqliteJobStore(tmp_path / "jobs.sqlite3"))
        assert await store.backlog() == 0
        assert store.problem() is None
        await store.close()

    run_async(scenario())
