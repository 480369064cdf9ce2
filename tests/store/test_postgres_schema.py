"""The PostgreSQL store's versioned migrations: applied once, under a lock, all or nothing."""

from __future__ import annotations

import threading
from contextlib import closing

import psycopg
import pytest

from mparticle_klaviyo.store import postgres_schema
from mparticle_klaviyo.store.errors import SchemaVersionError, StoreError
from mparticle_klaviyo.store.postgres import PostgresJobStore, migrate_database
from mparticle_klaviyo.store.postgres_schema import MIGRATION_LOCK, SCHEMA_VERSION
from tests.store.helpers import LEASE_S, T0, A
from tests.store.pg import schema_of, schema_url, server_url


def versions(url: str) -> list[tuple[int, object]]:
    with psycopg.connect(url) as conn:
        return [(row[0], row[1]) for row in conn.execute("SELECT version, applied_at FROM schema_version ORDER BY 1")]


def tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").fetchall()
    return {row[0] for row in rows}


def test_a_fresh_schema_is_migrated_to_the_current_version_one_row_per_step(postgres_url: str) -> None:
    assert migrate_database(postgres_url) == SCHEMA_VERSION
    assert [version for version, _ in versions(postgres_url)] == list(range(1, SCHEMA_VERSION + 1))
    assert tables(postgres_url) == {
        "schema_version",
        "jobs",
        "seen",
        "job_counts",
        "account_leases",
        "nodes",
        "profile_turns",
    }


def test_opening_an_up_to_date_store_applies_nothing(postgres_url: str) -> None:
    migrate_database(postgres_url)
    before = versions(postgres_url)
    with closing(PostgresJobStore(postgres_url)) as store:
        assert store.schema_version == SCHEMA_VERSION
    assert migrate_database(postgres_url) == SCHEMA_VERSION
    assert versions(postgres_url) == before


def test_two_processes_starting_at_once_migrate_once(postgres_url: str) -> None:
    results: list[int | BaseException] = []

    def start() -> None:
        try:
            results.append(migrate_database(postgres_url))
        except BaseException as error:
            results.append(error)

    with psycopg.connect(postgres_url, autocommit=True) as holder:
        # Hold the schema's migration lock, so both starters are sure to arrive while it is taken.
        holder.execute("SELECT pg_advisory_lock(%s::integer, hashtext(%s))", (MIGRATION_LOCK, schema_of(postgres_url)))
        starters = [threading.Thread(target=start) for _ in range(2)]
        for starter in starters:
            starter.start()
        for starter in starters:
            starter.join(0.5)
        assert all(starter.is_alive() for starter in starters), "both wait for the lock"
        assert tables(postgres_url) == set()
    for starter in starters:
        starter.join(30)
    assert results == [SCHEMA_VERSION, SCHEMA_VERSION]
    assert [version for version, _ in versions(postgres_url)] == list(range(1, SCHEMA_VERSION + 1))


def test_a_schema_newer_than_this_release_is_refused(postgres_url: str) -> None:
    migrate_database(postgres_url)
    with psycopg.connect(postgres_url) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaVersionError) as raised:
        PostgresJobStore(postgres_url)
    assert (raised.value.found, raised.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)


def test_a_failing_migration_leaves_no_half_made_schema(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = (*postgres_schema.MIGRATIONS[0], "SELECT 1 / 0")
    monkeypatch.setattr(postgres_schema, "MIGRATIONS", (broken,))
    with pytest.raises(StoreError):
        migrate_database(postgres_url)
    assert tables(postgres_url) == set()


def test_a_search_path_naming_no_existing_schema_is_refused_clearly() -> None:
    url = schema_url(server_url(), "mpk_test_no_such_schema")
    with pytest.raises(StoreError, match="no schema"):
        migrate_database(url)


def test_a_version_1_store_with_jobs_is_migrated_and_its_jobs_are_claimed_as_before(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patched:
        patched.setattr(postgres_schema, "MIGRATIONS", postgres_schema.MIGRATIONS[:1])
        patched.setattr(postgres_schema, "SCHEMA_VERSION", 1)
        assert migrate_database(postgres_url) == 1
    with psycopg.connect(postgres_url) as conn:  # jobs as version 1's enqueue stored them
        for key in ("k1", "k2"):
            conn.execute(
                "INSERT INTO jobs (connection, key, profile_key, kind, payload, created_at, run_at)"
                " VALUES (%s, %s, 'p', 'event', '{}', %s, 0)",
                (A, key, T0),
            )
    with closing(PostgresJobStore(postgres_url)) as store:
        assert store.schema_version == SCHEMA_VERSION
        claimed = store.claim(A, 10, LEASE_S, T0)
    assert [(job.key, job.epoch) for job in claimed] == [("k1", None), ("k2", None)]
