"""The in-memory reference model passes the contract too, so the stateful test compares against the contract."""

from __future__ import annotations

import pytest

from mparticle_klaviyo.store.base import JobStore
from tests.store.contract import WEEK_S, StoreContract
from tests.store.model import MemoryData, MemoryJobStore


class TestMemoryJobStore(StoreContract):
    invalid_job_error = TypeError

    @pytest.fixture(autouse=True)
    def _fresh_data(self) -> None:
        self.data = MemoryData()

    def open_store(self, *, dedup_window_s: float = WEEK_S) -> JobStore:
        return MemoryJobStore(self.data, dedup_window_s=dedup_window_s)
