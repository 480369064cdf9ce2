"""The storage hooks every part of the store contract uses."""

from __future__ import annotations

import abc
from collections.abc import Iterator

import pytest

from mparticle_klaviyo.store.base import Job, JobStore
from tests.store.helpers import LEASE_S, T0, A, new_jobs

WEEK_S = 7 * 86400.0


class ContractBase(abc.ABC):
    """Hooks a backend's test class fills in: how to open a store, and what an invalid job raises."""

    # The error a job with a wrong-typed field raises (the backend's driver error).
    invalid_job_error: type[Exception] | tuple[type[Exception], ...] = Exception

    @abc.abstractmethod
    def open_store(self, *, dedup_window_s: float = WEEK_S) -> JobStore:
        """Open a store on this test's storage: empty when the test starts, shared by every call."""

    @pytest.fixture
    def store(self) -> Iterator[JobStore]:
        """A store on fresh storage, closed after the test."""
        opened = self.open_store()
        yield opened
        opened.close()


def enqueue_and_claim(store: JobStore, *keys: str, connection: str = A, now: float = T0) -> list[Job]:
    """Enqueue ``keys`` and lease them all."""
    store.enqueue(new_jobs(*keys, connection=connection), now)
    return store.claim(connection, len(keys), LEASE_S, now)
