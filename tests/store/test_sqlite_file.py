"""SqliteJobStore's file: private, WAL, durable by default, with a versioned schema."""

from __future__ import annotations

import sqlite3
import stat
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from mparticle_klaviyo.store.errors import SchemaVersionError
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from mparticle_klaviyo.store.sqlite_schema import SCHEMA_VERSION
from tests.store.helpers import T0, new_jobs


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """Where the test's database lives."""
    return tmp_path / "jobs.db"


@pytest.fixture
def store(path: Path) -> Iterator[SqliteJobStore]:
    """A default store on ``path`` holding one job."""
    with closing(SqliteJobStore(path)) as opened:
        opened.enqueue(new_jobs("k1"), T0)
        yield opened


def pragma(store: SqliteJobStore, name: str) -> object:
    """A PRAGMA's value on the store's own connection (synchronous is per connection)."""
    assert store._conn is not None
    return store._conn.execute(f"PRAGMA {name}").fetchone()[0]


def schema_of(path: Path) -> list[tuple[str, str]]:
    """Every table, index and trigger definition in the file."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm"])
def test_the_database_files_are_readable_by_their_owner_only(store: SqliteJobStore, path: Path, suffix: str) -> None:
    assert stat.S_IMODE(path.with_name(path.name + suffix).stat().st_mode) == 0o600


def test_the_store_runs_in_wal_mode(store: SqliteJobStore) -> None:
    assert pragma(store, "journal_mode") == "wal"


def test_commits_are_synced_to_disk_by_default(store: SqliteJobStore) -> None:
    assert pragma(store, "synchronous") == 2  # FULL


def test_normal_synchronous_is_an_opt_in(path: Path) -> None:
    with closing(SqliteJobStore(path, synchronous="normal")) as store:
        assert pragma(store, "synchronous") == 1


def test_writers_wait_for_each_other_instead_of_failing(store: SqliteJobStore) -> None:
    assert pragma(store, "busy_timeout") == 5000


def test_an_unknown_synchronous_mode_is_refused(path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteJobStore(path, synchronous="OFF")


def test_a_negative_dedup_window_is_refused(path: Path) -> None:
    with pytest.raises(ValueError, match="dedup_window_s"):
        SqliteJobStore(path, dedup_window_s=-1)


def test_a_new_file_records_the_schema_version(store: SqliteJobStore) -> None:
    assert pragma(store, "user_version") == SCHEMA_VERSION


def test_reopening_leaves_the_schema_as_it_was(store: SqliteJobStore, path: Path) -> None:
    before = schema_of(path)
    SqliteJobStore(path).close()
    assert schema_of(path) == before


def test_a_schema_from_a_newer_release_is_refused(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaVersionError, match="newer"):
        SqliteJobStore(path)


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        SqliteJobStore(tmp_path / "absent" / "jobs.db")
