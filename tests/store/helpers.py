"""Builders shared by the store tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.base import Job, NewJob

A = "acct-a"
B = "acct-b"
T0 = 1_700_000_000.0
LEASE_S = 30.0


def new_job(key: str, connection: str = A, *, run_at: float = 0.0, payload: bytes | None = None) -> NewJob:
    """A NewJob whose payload and profile key are derived from ``key`` unless given."""
    body = payload if payload is not None else f'{{"event":"{key}"}}'.encode()
    return NewJob(
        connection=connection, key=key, profile_key=f"profile-{key}", kind="event", payload=body, run_at=run_at
    )


def new_jobs(*keys: str, connection: str = A) -> list[NewJob]:
    """One NewJob per key, all of one connection."""
    return [new_job(key, connection) for key in keys]


def ids(jobs: Sequence[Job]) -> list[int]:
    """The ids of ``jobs`` in their order."""
    return [job.id for job in jobs]


def keys(jobs: Sequence[Job]) -> list[str]:
    """The keys of ``jobs`` in their order."""
    return [job.key for job in jobs]


def hold_store_thread(store: AsyncStore) -> threading.Event:
    """Keep ``store``'s lanes busy until the returned event is set: its calls wait meanwhile."""
    release = threading.Event()
    for lane in {store._thread, store._delivery}:
        lane.submit(release.wait)
    return release
