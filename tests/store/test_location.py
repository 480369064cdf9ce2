"""``[service] store``: a SQLite path or a PostgreSQL URL, whose password never shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from mparticle_klaviyo.store.location import PostgresLocation, SqliteLocation, parse_store

PASSWORD = "s3cret-pw-0123"


def postgres(value: str) -> PostgresLocation:
    location = parse_store(value)
    assert isinstance(location, PostgresLocation)
    return location


@pytest.mark.parametrize("value", ["mparticle-klaviyo.sqlite3", "/var/lib/x/jobs.db", "./a b/c:d.sqlite3"])
def test_a_path_names_a_sqlite_file(value: str) -> None:
    assert parse_store(value) == SqliteLocation(Path(value))


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_postgresql_url_names_a_database(scheme: str) -> None:
    location = postgres(f"{scheme}://mpk@db.internal:5432/jobs")
    assert location.url.reveal() == f"{scheme}://mpk@db.internal:5432/jobs"
    assert location.shown == f"{scheme}://mpk@db.internal:5432/jobs"


@pytest.mark.parametrize("scheme", ["mysql", "sqlite", "PostgreSQL"])  # libpq's schemes are lower case
def test_another_kind_of_url_is_refused_without_quoting_it(scheme: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_store(f"{scheme}://mpk:{PASSWORD}@db/jobs")
    assert PASSWORD not in str(raised.value)
    assert "postgresql://" in str(raised.value)


def test_the_password_of_the_user_part_is_hidden_wherever_the_location_shows() -> None:
    location = postgres(f"postgresql://mpk:{PASSWORD}@db.internal/jobs?sslmode=require")
    assert location.shown == "postgresql://mpk:***@db.internal/jobs?sslmode=require"
    assert PASSWORD not in repr(location) + str(location) + location.local_name


def test_a_password_given_as_a_query_parameter_is_hidden_too() -> None:
    location = postgres(f"postgresql://mpk@db.internal/jobs?sslmode=require&password={PASSWORD}")
    assert location.shown == "postgresql://mpk@db.internal/jobs?sslmode=require&password=***"


def test_scrub_removes_the_password_in_both_its_percent_encoded_and_plain_forms() -> None:
    location = postgres("postgresql://mpk:p%40ss-0123@db/jobs")
    said = "auth failed for p%40ss-0123 (p@ss-0123)"
    assert location.scrub(said) == "auth failed for *** (***)"


def test_a_url_without_a_password_scrubs_nothing() -> None:
    assert postgres("postgresql://mpk@db/jobs").scrub("mpk@db") == "mpk@db"


def test_the_local_name_carries_host_port_and_database_but_no_credentials() -> None:
    location = postgres(f"postgresql://mpk:{PASSWORD}@db.internal:5433/jobs?sslmode=require")
    assert location.local_name == "mparticle-klaviyo-db.internal-5433-jobs"
    assert SqliteLocation(Path("jobs.sqlite3")).local_name == "jobs.sqlite3"
