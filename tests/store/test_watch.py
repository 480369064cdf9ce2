"""``StoreWatch`` on real SQLite files: deleted, moved, replaced, read-only, full, failing writes;
and on a real PostgreSQL server, where only a lost connection counts.

Free space and the clock are injected where the real ones cannot be steered; the optional
``tmpfs`` tests (root and ``mount`` only) fill and remount a real filesystem instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.base import EnqueueResult, NewJob
from mparticle_klaviyo.store.errors import StoreUnreachableError
from mparticle_klaviyo.store.postgres import PostgresJobStore
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from mparticle_klaviyo.store.watch import (
    WRITE_ERROR_HOLD_S,
    ProblemKind,
    StoreUnavailableError,
    StoreWatch,
    write_failure,
)
from tests.service.e2e_helpers import run_async
from tests.store.helpers import A, hold_store_thread, new_job, new_jobs
from tests.store.pg import admin, schema_of, terminate
from tests.tmpfs import tmpfs

MIB = 1024 * 1024


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Disk:
    """``os.statvfs`` of a disk with ``free`` bytes, optionally read-only or unreadable; counts calls."""

    def __init__(self, free: int = 10_000 * MIB) -> None:
        self.free = free
        self.read_only = False
        self.error: OSError | None = None
        self.calls = 0

    def __call__(self, path: str) -> os.statvfs_result:
        self.calls += 1
        if self.error is not None:
            raise self.error
        flag = os.ST_RDONLY if self.read_only else 0
        blocks = self.free // 4096
        # f_bsize, f_frsize, f_blocks, f_bfree, f_bavail, f_files, f_ffree, f_favail, f_flag, f_namemax
        return os.statvfs_result((4096, 4096, 10**9, blocks, blocks, 10**6, 10**6, 10**6, flag, 255))


class Opened:
    """A store opened as ``serve`` opens it, and its watch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.store = SqliteJobStore(path)
        self.store.enqueue(new_jobs("k1"), time.time())
        self.clock = Clock()
        self.disk = Disk()
        self.watch = StoreWatch(path, 64 * MIB, self.clock, statvfs=self.disk)

    def close(self) -> None:
        self.store.close()
        self.watch.close()


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[Opened]:
    store = Opened(tmp_path / "jobs.sqlite3")
    yield store
    store.close()


def sqlite_error(code: int, name: str, message: str) -> sqlite3.OperationalError:
    """An error as sqlite3 raises it, for result codes a test cannot provoke (disk I/O errors)."""
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    error.sqlite_errorname = name
    return error


# ----------------------------------------------------------------------------- files


def test_a_store_just_opened_has_no_problem(opened: Opened) -> None:
    assert opened.watch.check() is None
    assert opened.watch.problem is None


def test_a_deleted_database_file_is_a_problem_that_only_a_restart_clears(opened: Opened) -> None:
    opened.path.unlink()
    problem = opened.watch.check()
    assert problem is not None
    assert (problem.kind, problem.restart_needed) == (ProblemKind.DELETED, True)
    assert f"{opened.path} was deleted while serve had it open" in problem.message
    # A new file under the old name (another process opening the path) is not the one we write to.
    SqliteJobStore(opened.path).close()
    assert opened.watch.check() == problem
    assert opened.watch.problem == problem


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
def test_a_deleted_wal_or_shm_file_is_noticed(opened: Opened, suffix: str) -> None:
    Path(f"{opened.path}{suffix}").unlink()
    problem = opened.watch.check()
    assert problem is not None and problem.kind == ProblemKind.DELETED
    assert f"{opened.path}{suffix}" in problem.message


def test_a_database_file_moved_away_is_noticed(opened: Opened, tmp_path: Path) -> None:
    opened.path.rename(tmp_path / "elsewhere.sqlite3")
    problem = opened.watch.check()
    assert problem is not None and problem.kind == ProblemKind.DELETED and problem.restart_needed
    assert "was deleted or moved" in problem.message


def test_a_database_file_replaced_by_another_is_noticed(opened: Opened, tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite3"
    SqliteJobStore(other).close()
    os.replace(other, opened.path)
    problem = opened.watch.check()
    assert problem is not None
    assert (problem.kind, problem.restart_needed) == (ProblemKind.REPLACED, True)
    assert "was deleted and another file took its name" in problem.message


def test_a_database_file_moved_aside_and_replaced_is_noticed(opened: Opened, tmp_path: Path) -> None:
    opened.path.rename(tmp_path / "aside.sqlite3")
    SqliteJobStore(opened.path).close()
    problem = opened.watch.check()
    assert problem is not None and problem.kind == ProblemKind.REPLACED
    assert f"{opened.path} was replaced while" in problem.message


def test_a_file_that_appears_after_the_watch_started_is_watched_from_then_on(tmp_path: Path) -> None:
    path = tmp_path / "plain.sqlite3"
    path.write_bytes(b"")
    watch = StoreWatch(path, 0, Clock(), statvfs=Disk())
    try:
        wal = Path(f"{path}-wal")
        wal.write_bytes(b"")
        assert watch.check() is None
        wal.unlink()
        problem = watch.check()
        assert problem is not None and problem.kind == ProblemKind.DELETED and str(wal) in problem.message
    finally:
        watch.close()


# ----------------------------------------------------------------------------- disk


def test_free_space_below_the_threshold_stops_then_recovers_by_itself(opened: Opened) -> None:
    opened.disk.free = 10 * MIB
    opened.clock.now += 1.0
    problem = opened.watch.check()
    assert problem is not None
    assert (problem.kind, problem.restart_needed) == (ProblemKind.LOW_DISK, False)
    assert "10.0 MiB free" in problem.message and "64.0 MiB" in problem.message
    opened.disk.free = 100 * MIB
    opened.clock.now += 1.0
    assert opened.watch.check() is None


def test_free_space_is_measured_at_most_once_a_second(opened: Opened) -> None:
    calls = opened.disk.calls
    for _ in range(100):
        opened.watch.check()
        opened.clock.now += 0.009
    assert opened.disk.calls == calls  # 0.9 s: the measure of the first check still holds
    opened.clock.now += 0.1
    opened.watch.check()
    assert opened.disk.calls == calls + 1


def test_a_read_only_filesystem_stops_then_recovers(opened: Opened) -> None:
    opened.disk.read_only = True
    opened.clock.now += 1.0
    problem = opened.watch.check()
    assert problem is not None and problem.kind == ProblemKind.READ_ONLY and not problem.restart_needed
    opened.disk.read_only = False
    opened.clock.now += 1.0
    assert opened.watch.check() is None


def test_a_filesystem_that_cannot_be_measured_is_a_problem(opened: Opened) -> None:
    opened.disk.error = OSError(errno.EIO, os.strerror(errno.EIO))
    opened.clock.now += 1.0
    problem = opened.watch.check()
    assert problem is not None and problem.kind == ProblemKind.INACCESSIBLE


def test_a_threshold_of_zero_never_reports_low_space(tmp_path: Path) -> None:
    disk = Disk(free=0)
    SqliteJobStore(tmp_path / "jobs.sqlite3").close()
    watch = StoreWatch(tmp_path / "jobs.sqlite3", 0, Clock(), statvfs=disk)
    assert watch.check() is None
    watch.close()
    with pytest.raises(ValueError):
        StoreWatch(tmp_path / "jobs.sqlite3", -1)


# ----------------------------------------------------------------------------- write errors


def test_disk_and_file_failures_are_write_failures_and_a_busy_lock_is_not(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    SqliteJobStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError) as busy:
        sqlite3.connect(path, timeout=0).execute("INSERT INTO seen VALUES ('a', 'b', 0)")
    holder.execute("ROLLBACK")
    with pytest.raises(sqlite3.OperationalError) as read_only:
        sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("INSERT INTO seen VALUES ('a', 'b', 0)")
    holder.close()
    assert write_failure(busy.value) is None
    assert write_failure(read_only.value) == "attempt to write a readonly database (SQLITE_READONLY)"
    assert write_failure(sqlite_error(4874, "SQLITE_IOERR_FSYNC", "disk I/O error")) == (
        "disk I/O error (SQLITE_IOERR_FSYNC)"
    )
    assert write_failure(sqlite_error(13, "SQLITE_FULL", "database or disk is full")) is not None
    assert write_failure(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device (ENOSPC)"
    assert write_failure(OSError(errno.ENOENT, "No such file or directory")) is None
    assert write_failure(ValueError("not a store failure")) is None


def test_a_write_error_stops_acknowledging_for_the_hold_then_lets_the_next_commit_try(opened: Opened) -> None:
    assert opened.watch.note_write_error(sqlite_error(10, "SQLITE_IOERR", "disk I/O error"))
    problem = opened.watch.problem
    assert problem is not None
    assert (problem.kind, problem.restart_needed) == (ProblemKind.WRITE_FAILED, False)
    assert "disk I/O error" in problem.message
    opened.clock.now += 4.9
    assert opened.watch.check() == problem
    opened.clock.now += 0.1
    assert opened.watch.check() is None


def test_an_error_that_is_no_disk_failure_changes_nothing(opened: Opened) -> None:
    assert not opened.watch.note_write_error(sqlite_error(5, "SQLITE_BUSY", "database is locked"))
    assert not opened.watch.note_write_error(RuntimeError("a bug, not the disk"))
    assert opened.watch.check() is None


def test_a_write_error_from_a_full_disk_reports_the_disk_and_clears_when_space_is_back(opened: Opened) -> None:
    opened.disk.free = 1 * MIB
    opened.watch.note_write_error(sqlite_error(13, "SQLITE_FULL", "database or disk is full"))
    problem = opened.watch.problem
    assert problem is not None and problem.kind == ProblemKind.LOW_DISK  # measured at once, not a second later
    opened.disk.free = 1000 * MIB
    opened.clock.now += 5.0
    assert opened.watch.check() is None


def test_ensure_ok_raises_with_the_problem(opened: Opened) -> None:
    opened.watch.ensure_ok()
    opened.path.unlink()
    with pytest.raises(StoreUnavailableError) as raised:
        opened.watch.ensure_ok()
    assert raised.value.problem.kind == ProblemKind.DELETED
    assert "nothing was acknowledged" in str(raised.value)


# ----------------------------------------------------------------------------- logs


def test_one_error_line_when_a_problem_starts_and_one_info_line_when_it_clears(
    opened: Opened, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo.store")
    for free in (10 * MIB, 9 * MIB, 8 * MIB):  # the message changes, the problem does not
        opened.disk.free = free
        opened.clock.now += 1.0
        for _ in range(10):
            opened.watch.check()
    opened.disk.free = 1000 * MIB
    opened.clock.now += 1.0
    opened.watch.check()
    lines = [(record.levelname, record.getMessage()) for record in caplog.records]
    assert [level for level, _ in lines] == ["ERROR", "INFO"]
    assert "10.0 MiB free" in lines[0][1] and "ingest answers 503" in lines[0][1]
    assert caplog.records[0].problem == "low_disk"  # type: ignore[attr-defined]


def test_the_error_line_of_a_deleted_store_says_a_restart_is_needed(
    opened: Opened, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo.store")
    opened.path.unlink()
    for _ in range(5):
        opened.watch.check()
    [record] = caplog.records
    assert record.levelname == "ERROR"
    assert "was deleted" in record.getMessage() and "until serve is restarted" in record.getMessage()
    assert record.restart_needed is True  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- AsyncStore


class FailingStore(SqliteJobStore):
    """The real store, whose enqueue transactions fail with ``error`` while it is set."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.error: BaseException | None = None
        self.enqueues = 0

    def enqueue_many(self, calls: Sequence[Sequence[NewJob]], now: float) -> list[EnqueueResult]:
        self.enqueues += 1
        if self.error is not None:
            raise self.error
        return super().enqueue_many(calls, now)


def test_a_write_error_on_enqueue_raises_and_holds_the_next_enqueues_off_the_store(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = Clock()
        inner = FailingStore(tmp_path / "jobs.sqlite3")
        store = AsyncStore(inner, StoreWatch(inner.path, 0, clock, statvfs=Disk()))
        inner.error = sqlite_error(10, "SQLITE_IOERR", "disk I/O error")
        with pytest.raises(sqlite3.OperationalError):
            await store.enqueue(new_jobs("k1"), time.time())
        assert store.problem() is not None
        with pytest.raises(StoreUnavailableError):
            await store.enqueue(new_jobs("k2"), time.time())
        assert inner.enqueues == 1  # refused before reaching the store
        inner.error = None
        clock.now += 5.0
        assert await store.enqueue(new_jobs("k3"), time.time()) == EnqueueResult(stored=1, duplicates=0)
        assert await store.backlog() == 1
        await store.close()

    run_async(scenario())


def test_an_enqueue_committed_into_a_file_deleted_meanwhile_is_not_acknowledged(tmp_path: Path) -> None:
    async def scenario() -> None:
        inner = SqliteJobStore(tmp_path / "jobs.sqlite3")
        store = AsyncStore(inner, StoreWatch(inner.path, 0))
        assert await store.enqueue(new_jobs("before"), time.time()) == EnqueueResult(stored=1, duplicates=0)
        release = hold_store_thread(store)
        waiting = asyncio.create_task(store.enqueue(new_jobs("during"), time.time()))
        await asyncio.sleep(0.05)  # passed the check before the commit, now waits for the thread
        for suffix in ("", "-wal", "-shm"):
            Path(f"{inner.path}{suffix}").unlink()
        release.set()
        with pytest.raises(StoreUnavailableError) as raised:
            await waiting
        assert raised.value.problem.kind == ProblemKind.DELETED
        with pytest.raises(StoreUnavailableError):
            await store.enqueue(new_jobs("after"), time.time())
        # The open file still serves delivery: what was acknowledged before can still be sent.
        assert await store.backlog(A) == 2
        await store.close()

    run_async(scenario())


def test_without_a_watch_the_store_behaves_as_before(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = AsyncStore(SqliteJobStore(tmp_path / "jobs.sqlite3"))
        assert store.problem() is None
        store.ensure_writable()
        assert (await store.enqueue([new_job("k1")], time.time())).stored == 1
        await store.close()

    run_async(scenario())


# ----------------------------------------------------------------------------- a real full disk (root only)


def test_a_really_full_disk_fails_the_enqueue_and_recovers_when_space_is_freed(tmp_path: Path) -> None:
    async def scenario(disk: Path) -> None:
        clock = Clock()
        inner = SqliteJobStore(disk / "jobs.sqlite3")
        store = AsyncStore(inner, StoreWatch(inner.path, 0, clock))
        acknowledged: list[str] = []
        for n in range(20):
            await store.enqueue([new_job(f"early{n}", payload=os.urandom(2048))], time.time())
            acknowledged.append(f"early{n}")
        filler = disk / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as out:
            for _ in range(1024):
                out.write(b"\0" * 4096)
                out.flush()
        with pytest.raises(sqlite3.Error) as full:
            for n in range(10_000):
                await store.enqueue([new_job(f"k{n}", payload=os.urandom(2048))], time.time())
                acknowledged.append(f"k{n}")
        assert write_failure(full.value) is not None, full.value
        print(f"acknowledged {len(acknowledged)} jobs, then: {write_failure(full.value)}")
        problem = store.problem()
        assert problem is not None and problem.kind == ProblemKind.WRITE_FAILED
        filler.unlink()
        clock.now += 5.0
        assert store.problem() is None
        assert (await store.enqueue([new_job("after")], time.time())).stored == 1
        assert await store.backlog() == len(acknowledged) + 1  # everything acknowledged is there
        await store.close()

    with tmpfs(tmp_path / "disk", 1) as disk:
        run_async(scenario(disk))


# ----------------------------------------------------------------------------- a database server (PostgreSQL)

SHOWN_URL = "postgresql://mpk:***@db.internal/jobs"


def test_a_database_watch_checks_no_file_and_no_disk() -> None:
    disk = Disk(free=0)
    watch = StoreWatch(None, 64 * MIB, Clock(), statvfs=disk, label=SHOWN_URL)
    assert watch.check() is None
    assert (disk.calls, watch.path, watch.label) == (0, None, SHOWN_URL)


def test_a_lost_database_connection_holds_ingest_then_lets_the_next_commit_try() -> None:
    clock = Clock()
    watch = StoreWatch(None, 0, clock, label=SHOWN_URL)
    assert watch.note_write_error(StoreUnreachableError("connection refused"))
    problem = watch.check()
    assert problem is not None and problem.kind == ProblemKind.UNREACHABLE and not problem.restart_needed
    assert problem.message == "the job store database is unreachable: connection refused"
    clock.now += WRITE_ERROR_HOLD_S
    assert watch.check() is None


def test_the_error_line_of_an_unreachable_database_names_it_as_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo.store")
    watch = StoreWatch(None, 0, Clock(), label=SHOWN_URL)
    watch.note_write_error(StoreUnreachableError("server closed the connection unexpectedly"))
    [record] = caplog.records
    assert record.levelname == "ERROR" and "unreachable" in record.getMessage()
    assert record.store == SHOWN_URL  # type: ignore[attr-defined]


def test_an_enqueue_that_loses_its_database_connection_holds_ingest_until_the_next_try(postgres_url: str) -> None:
    async def scenario() -> None:
        clock = Clock()
        inner = PostgresJobStore(postgres_url)
        store = AsyncStore(inner, StoreWatch(None, 0, clock, label=inner.location.shown))
        assert await store.enqueue(new_jobs("k1"), time.time()) == EnqueueResult(stored=1, duplicates=0)
        with admin() as conn:
            terminate(conn, schema_of(postgres_url))
        with pytest.raises(StoreUnreachableError):
            await store.enqueue(new_jobs("k2"), time.time())
        with pytest.raises(StoreUnavailableError) as held:
            await store.enqueue(new_jobs("k3"), time.time())
        assert held.value.problem.kind == ProblemKind.UNREACHABLE
        clock.now += WRITE_ERROR_HOLD_S
        assert await store.enqueue(new_jobs("k2", "k3"), time.time()) == EnqueueResult(stored=2, duplicates=0)
        assert await store.backlog() == 3
        await store.close()

    run_async(scenario())
