"""PostgresJobStore passes the JobStore contract on the machine's PostgreSQL, and holds up between sessions."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import closing

import psycopg
import pytest

from mparticle_klaviyo.store.base import EnqueueResult, JobStore
from mparticle_klaviyo.store.errors import StoreClosedError, StoreError, StoreUnreachableError
from mparticle_klaviyo.store.postgres import PostgresJobStore
from tests.store.contract import WEEK_S, StoreContract
from tests.store.helpers import LEASE_S, T0, A, keys, new_jobs
from tests.store.pg import admin, schema_of, schema_url, server_url, terminate


class TestPostgresJobStore(StoreContract):
    invalid_job_error = psycopg.Error

    @pytest.fixture(autouse=True)
    def _fresh_schema(self, postgres_url: str) -> None:
        self.url = postgres_url

    def open_store(self, *, dedup_window_s: float = WEEK_S) -> JobStore:
        return PostgresJobStore(self.url, dedup_window_s=dedup_window_s)


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresJobStore]:
    with closing(PostgresJobStore(postgres_url)) as opened:
        yield opened


def test_a_claim_skips_rows_another_transaction_has_locked_instead_of_waiting(postgres_url: str) -> None:
    # lock_timeout: a claim that waited for the lock would fail the test instead of hanging it.
    impatient = schema_url(server_url(), schema_of(postgres_url), lock_timeout="2s")
    with closing(PostgresJobStore(impatient)) as store, psycopg.connect(postgres_url) as other:
        store.enqueue(new_jobs("k1", "k2", "k3"), T0)
        other.execute("SELECT id FROM jobs WHERE key = 'k1' FOR UPDATE")
        started = time.monotonic()
        assert keys(store.claim(A, 10, LEASE_S, T0)) == ["k2", "k3"]
        assert time.monotonic() - started < 1.0
        other.rollback()
        assert keys(store.claim(A, 10, LEASE_S, T0)) == ["k1"]


def test_a_key_another_transaction_is_enqueueing_is_a_duplicate_once_that_one_commits(
    store: PostgresJobStore, postgres_url: str
) -> None:
    results: list[EnqueueResult] = []
    with psycopg.connect(postgres_url) as other:
        other.execute("INSERT INTO seen (connection, key, first_seen) VALUES (%s, 'k1', %s)", (A, T0))
        racing = threading.Thread(target=lambda: results.append(store.enqueue(new_jobs("k1", "k2"), T0)))
        racing.start()
        racing.join(0.5)
        assert racing.is_alive(), "the enqueue waits for the other transaction's key"
        other.commit()
    racing.join(10)
    assert results == [EnqueueResult(stored=1, duplicates=1)]


def test_a_key_whose_other_enqueue_rolled_back_is_stored(store: PostgresJobStore, postgres_url: str) -> None:
    results: list[EnqueueResult] = []
    with psycopg.connect(postgres_url) as other:
        other.execute("INSERT INTO seen (connection, key, first_seen) VALUES (%s, 'k1', %s)", (A, T0))
        racing = threading.Thread(target=lambda: results.append(store.enqueue(new_jobs("k1"), T0)))
        racing.start()
        racing.join(0.5)
        other.rollback()
    racing.join(10)
    assert results == [EnqueueResult(stored=1, duplicates=0)]


def test_a_dropped_connection_fails_one_call_as_unreachable_and_the_next_reconnects(
    store: PostgresJobStore, postgres_url: str
) -> None:
    store.enqueue(new_jobs("k1"), T0)
    with admin() as conn:
        assert terminate(conn, schema_of(postgres_url)) >= 1
    with pytest.raises(StoreUnreachableError):
        store.backlog()
    assert store.backlog() == 1


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` added to its user (trust authentication ignores it)."""
    user, rest = url.split("://", 1)[1].split("@", 1)
    return f"postgresql://{user}:{password}@{rest}"


def logged(error: BaseException) -> str:
    """The messages a logged traceback of ``error`` prints: its own and those of the exceptions chained to it."""
    shown: list[str] = []
    current: BaseException | None = error
    while current is not None:
        shown += traceback.format_exception_only(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "".join(shown)


def test_a_server_that_does_not_answer_is_unreachable_and_no_traceback_shows_the_password() -> None:
    with pytest.raises(StoreUnreachableError) as raised:
        PostgresJobStore("postgresql://root:pw-0123456789@127.0.0.1:1/test")
    assert "127.0.0.1" in str(raised.value)
    assert "pw-0123456789" not in logged(raised.value)


def test_a_malformed_url_is_refused_without_quoting_its_password() -> None:
    with pytest.raises(StoreError) as raised:
        PostgresJobStore("postgresql://root:pw%zz0123456789@127.0.0.1:1/test")
    assert "0123456789" not in logged(raised.value)


def test_the_stores_repr_hides_the_password(postgres_url: str) -> None:
    with closing(PostgresJobStore(with_password(postgres_url, "pw-0123456789"))) as opened:
        assert opened.backlog() == 0
        assert "pw-0123456789" not in repr(opened) + repr(opened.location) + str(opened.location)
        assert ":***@" in repr(opened)


def test_closing_a_store_closes_its_connections(store: PostgresJobStore, postgres_url: str) -> None:
    store.backlog()
    store.close()
    with pytest.raises(StoreClosedError):
        store.backlog()
    with admin() as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (schema_of(postgres_url),)
        ).fetchone()
    assert row == (0,)
