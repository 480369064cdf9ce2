"""SqliteJobStore passes the JobStore contract on a real file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mparticle_klaviyo.store.base import JobStore
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.store.contract import WEEK_S, StoreContract


class TestSqliteJobStore(StoreContract):
    invalid_job_error = sqlite3.Error

    @pytest.fixture(autouse=True)
    def _fresh_file(self, tmp_path: Path) -> None:
        self.path = tmp_path / "jobs.db"

    def open_store(self, *, dedup_window_s: float = WEEK_S) -> JobStore:
        return SqliteJobStore(self.path, dedup_window_s=dedup_window_s)
