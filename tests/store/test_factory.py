"""One factory opens, migrates, watches and owns both kinds of store."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path

from mparticle_klaviyo.store import postgres_schema, sqlite_schema
from mparticle_klaviyo.store.factory import (
    describe,
    exists,
    migrate_store,
    open_store,
    owner_lock,
    store_lanes,
    watch_store,
)
from mparticle_klaviyo.store.postgres import PostgresJobStore
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.store.helpers import T0, new_jobs


def test_a_path_opens_a_sqlite_store_with_the_dedup_window(tmp_path: Path) -> None:
    with closing(open_store(str(tmp_path / "jobs.sqlite3"), dedup_window_s=60)) as store:
        assert isinstance(store, SqliteJobStore) and store.dedup_window_s == 60


def test_a_postgresql_url_opens_a_postgresql_store_with_the_dedup_window(postgres_url: str) -> None:
    with closing(open_store(postgres_url, dedup_window_s=60)) as store:
        assert isinstance(store, PostgresJobStore) and store.dedup_window_s == 60
        store.enqueue(new_jobs("k1"), T0)
        assert store.backlog() == 1


def test_migrate_store_creates_either_kind_and_returns_its_schema_version(tmp_path: Path, postgres_url: str) -> None:
    path = tmp_path / "jobs.sqlite3"
    assert migrate_store(str(path)) == sqlite_schema.SCHEMA_VERSION
    assert path.exists()
    assert migrate_store(postgres_url) == postgres_schema.SCHEMA_VERSION


def test_a_sqlite_store_exists_once_its_file_does_and_a_database_is_taken_to(tmp_path: Path) -> None:
    assert not exists(str(tmp_path / "jobs.sqlite3"))
    (tmp_path / "jobs.sqlite3").touch()
    assert exists(str(tmp_path / "jobs.sqlite3"))
    assert exists("postgresql://mpk@db/jobs")


def test_only_a_sqlite_store_has_an_owner_lock(tmp_path: Path) -> None:
    lock = owner_lock(str(tmp_path / "jobs.sqlite3"))
    assert lock is not None and lock.path == tmp_path / "jobs.sqlite3.lock"
    assert owner_lock("postgresql://mpk@db/jobs") is None


def test_a_database_store_is_watched_without_files_and_named_without_its_password(tmp_path: Path) -> None:
    watch = watch_store("postgresql://mpk:pw-0123@db/jobs", 64 * 1024 * 1024)
    assert (watch.path, watch.label, watch.check()) == (None, "postgresql://mpk:***@db/jobs", None)
    assert describe("postgresql://mpk:pw-0123@db/jobs") == "postgresql://mpk:***@db/jobs"
    sqlite = watch_store(str(tmp_path / "jobs.sqlite3"), 0)
    assert sqlite.path == str(tmp_path / "jobs.sqlite3")
    sqlite.close()


def test_sqlite_runs_on_one_lane_and_postgresql_on_two(tmp_path: Path) -> None:
    assert store_lanes(str(tmp_path / "jobs.sqlite3")) == 1
    assert store_lanes("postgresql://mpk@db.internal/mpk") == 2
