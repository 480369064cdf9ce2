"""Per-profile order between concurrent writers on PostgreSQL: a profile's jobs are claimed in the
order they were accepted, even when two nodes enqueue that profile's batches at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import closing

import psycopg
import pytest

from mparticle_klaviyo.store.base import EnqueueResult, Job, NewJob
from mparticle_klaviyo.store.postgres import PostgresJobStore, _copy_jobs, _take_turns
from tests.store.helpers import LEASE_S, T0, A, keys

PROFILE = "profile-p"


def job(key: str, profile: str = PROFILE) -> NewJob:
    return NewJob(connection=A, key=key, profile_key=profile, kind="event", payload=b"{}")


@pytest.fixture
def stores(postgres_url: str) -> Iterator[tuple[PostgresJobStore, PostgresJobStore]]:
    """Two nodes' stores on one database."""
    with closing(PostgresJobStore(postgres_url)) as one, closing(PostgresJobStore(postgres_url)) as two:
        yield one, two


def enqueue_in_background(store: PostgresJobStore, jobs: list[NewJob]) -> tuple[threading.Thread, list[EnqueueResult]]:
    results: list[EnqueueResult] = []
    thread = threading.Thread(target=lambda: results.append(store.enqueue(jobs, T0)))
    thread.start()
    return thread, results


def open_enqueue(url: str, jobs: list[NewJob]) -> psycopg.Connection[tuple[object, ...]]:
    """A writer midway through the store's enqueue of ``jobs``: turns taken, ids drawn, not committed.

    Paused inside the window the turns close: ids drawn, the statement's job_counts trigger (whose
    row lock would otherwise queue the next writer of the connection) not run yet. Triggers are
    off in this session (replica role) to hold it there; job_counts is not what the test reads.
    """
    conn = psycopg.connect(url)
    conn.execute("SET session_replication_role = replica")
    with conn.cursor() as cursor:
        _take_turns(cursor, jobs, T0)
        _copy_jobs(cursor, jobs, T0)
    return conn


def test_a_second_writer_of_a_profile_waits_for_the_first_to_commit_and_is_claimed_after_it(
    stores: tuple[PostgresJobStore, PostgresJobStore], postgres_url: str
) -> None:
    _, second = stores
    with open_enqueue(postgres_url, [job("first")]) as writer:
        racing, results = enqueue_in_background(second, [job("second")])
        racing.join(0.5)
        assert racing.is_alive(), "the second enqueue of the profile waits for the first one's commit"
        assert second.claim(A, 10, LEASE_S, T0) == [], "nothing of the profile is claimable meanwhile"
        writer.commit()
    racing.join(10)
    assert results == [EnqueueResult(stored=1, duplicates=0)]
    assert keys(second.claim(A, 10, LEASE_S, T0)) == ["first", "second"]


def test_writers_of_different_profiles_do_not_wait_for_each_other(
    stores: tuple[PostgresJobStore, PostgresJobStore], postgres_url: str
) -> None:
    _, second = stores
    with open_enqueue(postgres_url, [job("first")]) as writer:
        racing, results = enqueue_in_background(second, [job("other", profile="profile-q")])
        racing.join(5)
        assert not racing.is_alive()
        writer.rollback()
    assert results == [EnqueueResult(stored=1, duplicates=0)]


def test_two_nodes_enqueueing_one_profile_at_once_are_claimed_in_commit_order(
    stores: tuple[PostgresJobStore, PostgresJobStore],
) -> None:
    one, two = stores
    committed: list[str] = []  # each writer's keys in the order its enqueues returned (committed)
    lock = threading.Lock()

    def write(store: PostgresJobStore, name: str) -> None:
        for n in range(60):
            key = f"{name}-{n:03}"
            store.enqueue([job(key), job(f"{key}-other", profile=f"profile-{name}")], T0)
            with lock:
                committed.append(key)

    writers = [threading.Thread(target=write, args=(store, name)) for store, name in ((one, "w1"), (two, "w2"))]
    claims: list[list[Job]] = []
    for writer in writers:
        writer.start()
    while any(writer.is_alive() for writer in writers):
        claims.append(one.claim(A, 1000, LEASE_S, T0))
        time.sleep(0.001)
    for writer in writers:
        writer.join()
    claims.append(one.claim(A, 1000, LEASE_S, T0))
    shared = [
        (job.id, turn, job.key) for turn, jobs in enumerate(claims) for job in jobs if not job.key.endswith("-other")
    ]
    claimed = [key for _, _, key in shared]
    assert sorted(claimed) == sorted(committed)
    # Each writer's jobs are claimed in the order its enqueues committed.
    for name in ("w1", "w2"):
        assert [key for key in claimed if key.startswith(name)] == [key for key in committed if key.startswith(name)]
    # A claim never took a later job of the profile while an earlier one was missing: in id order,
    # the claims that took them never go back. (Taken from the database's ids, not from the order
    # the threads noted their commits, which a busy machine can swap.)
    turns = [turn for _, turn, _ in sorted(shared)]
    assert turns == sorted(turns)
