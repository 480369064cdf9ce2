"""Each real store (SQLite, PostgreSQL) behaves like the in-memory model over random calls on a fake clock."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import msgspec
import psycopg
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from mparticle_klaviyo.store.base import DeadFilter, Job, JobStore
from mparticle_klaviyo.store.postgres import PostgresJobStore
from mparticle_klaviyo.store.rows import JOB_COLUMNS, to_job
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.store.helpers import T0, A, B, new_job
from tests.store.model import MemoryJobStore
from tests.store.pg import fresh_schema, server_url

# Steps, delays, leases and the window share small round numbers, so that boundaries (a lease
# ending exactly now, a key exactly WINDOW_S old) are hit, not just passed over.
WINDOW_S = 60.0
STEPS = st.sampled_from([0.0, 1.0, 5.0, 30.0, 60.0])
DELAYS = st.sampled_from([0.0, 5.0, 30.0])
LEASES = st.sampled_from([5.0, 30.0])
CONNECTIONS = st.sampled_from([A, B])
# Few keys, so that repeats are common.
KEYS = st.sampled_from([f"k{n}" for n in range(6)])
# Picks of ids: below 90 a stored job's id, otherwise an id that names no job.
PICKS = st.lists(st.integers(0, 99), max_size=4)
# Reasons of one part and of two (as the dispatcher writes them); filters name whole reasons,
# single parts of either position, and a prefix that is no part.
REASONS = st.sampled_from(["r1", "r2", "r1:x", "r2:x"])
Reader = Callable[[str], list[tuple[Any, ...]]]
FILTERS = st.builds(
    DeadFilter,
    connection=st.none() | CONNECTIONS,
    reason=st.none() | st.sampled_from(["r1", "r2", "x", "r1:x", "r"]),
    ids=st.none() | PICKS.map(tuple),
)


class StoreMatchesModel(RuleBasedStateMachine):
    """Every call gets the same answer from the real store and MemoryJobStore."""

    def __init__(self, backend: Callable[[ExitStack], tuple[JobStore, Reader]]) -> None:
        """``backend`` opens the real store on fresh storage, registers its clean-up, and gives a
        reader of rows through a second, plain connection (a difference shows at its step)."""
        super().__init__()
        self.cleanup = ExitStack()
        self.real, self.read = backend(self.cleanup)
        self.model = MemoryJobStore(dedup_window_s=WINDOW_S)
        self.now = T0

    def teardown(self) -> None:
        """Close the store and delete its storage."""
        self.real.close()
        self.cleanup.close()

    def ids(self, picks: list[int] | tuple[int, ...]) -> list[int]:
        """Turn picks into ids, mostly of stored jobs."""
        stored = sorted(self.model.data.jobs) or [1]
        return [stored[pick % len(stored)] if pick < 90 else 10_000 + pick for pick in picks]

    def where(self, picked: DeadFilter) -> DeadFilter:
        """``picked`` with its id picks turned into ids."""
        return picked if picked.ids is None else msgspec.structs.replace(picked, ids=tuple(self.ids(picked.ids)))

    @rule(dt=STEPS)
    def advance(self, dt: float) -> None:
        """Let time pass."""
        self.now += dt

    @rule(pick=st.integers(0, 99))
    def advance_to_a_boundary(self, pick: int) -> None:
        """Jump to the exact moment a lease ends, a job falls due, or a key leaves the window."""
        data = self.model.data
        moments = [job.lease_until for job in data.jobs.values() if job.lease_until is not None]
        moments += [job.run_at for job in data.jobs.values()]
        moments += [first_seen + WINDOW_S for first_seen in data.seen.values()]
        future = sorted({moment for moment in moments if moment > self.now})
        if future:
            self.now = future[pick % len(future)]

    @rule(batch=st.lists(st.tuples(CONNECTIONS, KEYS, DELAYS), max_size=4))
    def enqueue(self, batch: list[tuple[str, str, float]]) -> None:
        """Enqueue a batch, repeats included."""
        jobs = [new_job(key, connection, run_at=self.now + delay) for connection, key, delay in batch]
        assert self.real.enqueue(jobs, self.now) == self.model.enqueue(jobs, self.now)

    @rule(connection=CONNECTIONS, limit=st.integers(0, 4), lease_s=LEASES)
    def claim(self, connection: str, limit: int, lease_s: float) -> None:
        """Lease due jobs."""
        assert self.real.claim(connection, limit, lease_s, self.now) == self.model.claim(
            connection, limit, lease_s, self.now
        )

    @rule(picks=PICKS)
    def ack(self, picks: list[int]) -> None:
        """Delete jobs."""
        ids = self.ids(picks)
        self.real.ack(ids)
        self.model.ack(ids)

    @rule(picks=PICKS, delay=DELAYS, failed=st.booleans())
    def retry(self, picks: list[int], delay: float, failed: bool) -> None:
        """Reschedule jobs as failed or throttled."""
        ids = self.ids(picks)
        self.real.retry(ids, self.now + delay, f"error at {self.now}", failed)
        self.model.retry(ids, self.now + delay, f"error at {self.now}", failed)

    @rule(picks=PICKS, reason=REASONS, failed=st.booleans())
    def bury(self, picks: list[int], reason: str, failed: bool) -> None:
        """Dead-letter jobs, after a failure or not."""
        ids = self.ids(picks)
        self.real.bury(ids, reason, "400", self.now, failed=failed)
        self.model.bury(ids, reason, "400", self.now, failed=failed)

    @rule(picks=PICKS)
    def release(self, picks: list[int]) -> None:
        """Give leases back."""
        ids = self.ids(picks)
        self.real.release(ids)
        self.model.release(ids)

    @rule(to_a_lease_end=st.booleans())
    def release_expired(self, to_a_lease_end: bool) -> None:
        """Recover expired leases, now or at the exact end of the next lease."""
        ends = sorted(job.lease_until for job in self.model.data.jobs.values() if job.lease_until is not None)
        if to_a_lease_end and ends and ends[0] > self.now:
            self.now = ends[0]
        assert self.real.release_expired(self.now) == self.model.release_expired(self.now)

    @rule(picked=FILTERS)
    def redrive(self, picked: DeadFilter) -> None:
        """Bring dead jobs back."""
        where = self.where(picked)
        assert self.real.redrive(where, self.now) == self.model.redrive(where, self.now)

    @rule(picked=FILTERS)
    def purge(self, picked: DeadFilter) -> None:
        """Delete dead jobs."""
        where = self.where(picked)
        assert self.real.purge(where) == self.model.purge(where)

    @rule(picked=FILTERS, limit=st.integers(0, 3), offset=st.integers(0, 3))
    def dead_page(self, picked: DeadFilter, limit: int, offset: int) -> None:
        """List one page of dead jobs."""
        where = self.where(picked)
        assert self.real.dead(where, limit, offset) == self.model.dead(where, limit, offset)

    @rule(age=st.sampled_from([0.0, 30.0, WINDOW_S, 200.0]))
    def forget_before(self, age: float) -> None:
        """Drop old dedup memory."""
        assert self.real.forget_before(self.now - age) == self.model.forget_before(self.now - age)

    @invariant()
    def rows_agree(self) -> None:
        """Every stored job and every remembered key match the model's."""
        rows = self.read(f"SELECT {JOB_COLUMNS} FROM jobs ORDER BY id")
        assert [to_job(row) for row in rows] == sorted(self.model.data.jobs.values(), key=_job_id)
        seen = self.read("SELECT connection, key, first_seen FROM seen")
        assert {(connection, key): first for connection, key, first in seen} == self.model.data.seen

    @invariant()
    def views_agree(self) -> None:
        """Counts, backlog, connections, the DLQ and failing jobs match after every step."""
        for view in ("counts", "connections", "backlog"):
            assert getattr(self.real, view)() == getattr(self.model, view)(), view
        for connection in (A, B):
            assert self.real.backlog(connection) == self.model.backlog(connection)
            assert self.real.failing_jobs(connection) == self.model.failing_jobs(connection)
        assert self.real.dead(DeadFilter(), limit=1000) == self.model.dead(DeadFilter(), limit=1000)


def open_sqlite(cleanup: ExitStack) -> tuple[JobStore, Reader]:
    """SqliteJobStore on a file of its own per example."""
    directory = tempfile.mkdtemp(prefix="store-stateful-")
    cleanup.callback(shutil.rmtree, directory)
    path = Path(directory) / "jobs.db"
    reader = sqlite3.connect(path)
    cleanup.callback(reader.close)
    # NORMAL skips the fsync per commit: this test is about semantics, and runs thousands of commits.
    store = SqliteJobStore(path, dedup_window_s=WINDOW_S, synchronous="NORMAL")
    return store, lambda query: reader.execute(query).fetchall()


def open_postgres(cleanup: ExitStack) -> tuple[JobStore, Reader]:
    """PostgresJobStore in a schema of its own per example."""
    # synchronous_commit=off: as SQLite's NORMAL above, no wait for the disk per commit.
    url = cleanup.enter_context(fresh_schema(synchronous_commit="off"))
    reader = psycopg.connect(url, autocommit=True)
    cleanup.callback(reader.close)
    return PostgresJobStore(url, dedup_window_s=WINDOW_S), lambda query: reader.execute(query).fetchall()


class SqliteMatchesModel(StoreMatchesModel):
    """The model comparison on SQLite."""

    def __init__(self) -> None:
        super().__init__(open_sqlite)


class PostgresMatchesModel(StoreMatchesModel):
    """The model comparison on PostgreSQL."""

    def __init__(self) -> None:
        super().__init__(open_postgres)


SETTINGS = settings(
    max_examples=100, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _job_id(job: Job) -> int:
    return job.id


def test_the_sqlite_store_matches_the_model() -> None:
    run_state_machine_as_test(SqliteMatchesModel, settings=SETTINGS)


def test_the_postgresql_store_matches_the_model() -> None:
    server_url()  # skips (or fails under CI) before hypothesis starts when the server is unreachable
    run_state_machine_as_test(PostgresMatchesModel, settings=SETTINGS)
