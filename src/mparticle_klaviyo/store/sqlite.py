"""The embedded job store: one SQLite file in WAL mode, durable when a call returns.

Threading: one connection per store, shared by every thread behind a lock. SQLite admits one
writer at a time anyway and the service drives the store from one dedicated thread, so a pool
would buy nothing; one connection also lets ``close()`` close everything from whichever thread
calls it. Other processes (``status`` or ``dlq`` beside a running ``serve``) open their own
store on the same file: WAL lets them read while we write, and ``BEGIN IMMEDIATE`` plus
``busy_timeout`` queue their writes behind ours instead of failing with SQLITE_BUSY.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mparticle_klaviyo.store import sqlite_sql as sql
from mparticle_klaviyo.store.base import DeadFilter, EnqueueResult, Job, NewJob, StateCount
from mparticle_klaviyo.store.errors import StoreClosedError
from mparticle_klaviyo.store.sqlite_schema import connect

DEFAULT_DEDUP_WINDOW_S = 7 * 86400.0


class SqliteJobStore:
    """``JobStore`` on one SQLite file; ``synchronous="NORMAL"`` trades power-loss durability for speed."""

    def __init__(
        self, path: str | Path, *, dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S, synchronous: str = "FULL"
    ) -> None:
        if dedup_window_s < 0:
            raise ValueError("dedup_window_s must be >= 0")
        self.path = Path(path)
        self.dedup_window_s = dedup_window_s
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = connect(self.path, synchronous)

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                raise StoreClosedError()
            yield self._conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads first and
        # writes later can fail with SQLITE_BUSY at the upgrade, which busy_timeout cannot fix.
        with self._read() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _check_open(self) -> None:
        with self._read():
            pass

    def enqueue(self, jobs: Sequence[NewJob], now: float) -> EnqueueResult:
        """Store new jobs in one durable transaction, skipping (connection, key) repeats."""
        return self.enqueue_many([jobs], now)[0]

    def enqueue_many(self, calls: Sequence[Sequence[NewJob]], now: float) -> list[EnqueueResult]:
        """``enqueue`` each of ``calls`` in order, in one durable transaction (group commit)."""
        if not any(calls):
            self._check_open()
            return [EnqueueResult(stored=0, duplicates=0) for _ in calls]
        cutoff = now - self.dedup_window_s
        every = [job for jobs in calls for job in jobs]
        with self._write() as conn:
            if _remember_if_all_new(conn, every, now, cutoff):
                news = [list(jobs) for jobs in calls]
            else:
                known = _known(conn, every, cutoff)
                news = [_new_in_call(jobs, known) for jobs in calls]
                _remember(conn, [job for jobs in news for job in jobs], now, cutoff)
            new = [job for jobs in news for job in jobs]
            _insert_jobs(conn, new, now)
            for connection, keys in _keys_by_connection(new).items():
                conn.execute(sql.COUNT_INSERTED, (connection, len(keys)))
        return [
            EnqueueResult(stored=len(n), duplicates=len(jobs) - len(n)) for jobs, n in zip(calls, news, strict=True)
        ]

    def claim(self, connection: str, limit: int, lease_s: float, now: float, *, epoch: int | None = None) -> list[Job]:
        """Lease up to ``limit`` due READY jobs of ``connection``, oldest first."""
        _no_epoch(epoch)
        if limit <= 0:
            self._check_open()
            return []
        with self._write() as conn:
            rows = conn.execute(sql.CLAIM, (now + lease_s, connection, now, limit)).fetchall()
        # RETURNING yields rows in no promised order.
        return sorted(map(sql.to_job, rows), key=_job_id)

    def ack(self, ids: Sequence[int], *, epoch: int | None = None) -> None:
        """Delete delivered jobs; dead ones are left alone (only redrive and purge touch the DLQ)."""
        _no_epoch(epoch)
        with self._write() as conn:
            conn.execute(sql.ACK, (sql.id_list(ids),))

    def retry(self, ids: Sequence[int], run_at: float, error: str, failed: bool, *, epoch: int | None = None) -> None:
        """Return live (leased or ready) jobs to READY, due at ``run_at``; count an attempt or a throttle."""
        _no_epoch(epoch)
        with self._write() as conn:
            conn.execute(sql.RETRY, (run_at, error, int(failed), int(not failed), sql.id_list(ids)))

    def bury(
        self,
        ids: Sequence[int],
        reason: str,
        detail: str,
        now: float,
        *,
        failed: bool = False,
        epoch: int | None = None,
    ) -> None:
        """Move live jobs to DEAD with a reason and Klaviyo's answer, ``failed`` counting an attempt.

        A dead job keeps its first reason and count.
        """
        _no_epoch(epoch)
        with self._write() as conn:
            conn.execute(sql.BURY, (reason, detail, now, int(failed), sql.id_list(ids)))

    def release(self, ids: Sequence[int], *, epoch: int | None = None) -> None:
        """Return leased jobs to READY as they were (graceful shutdown); counts nothing."""
        _no_epoch(epoch)
        with self._write() as conn:
            conn.execute(sql.RELEASE, (sql.id_list(ids),))

    def release_expired(self, now: float) -> int:
        """Return jobs whose lease has expired to READY (crash recovery); how many."""
        with self._write() as conn:
            return conn.execute(sql.RELEASE_EXPIRED, (now,)).rowcount

    def connections(self) -> list[str]:
        """Connections that have jobs in any state."""
        with self._read() as conn:
            return [row[0] for row in conn.execute(sql.CONNECTIONS)]

    def counts(self) -> list[StateCount]:
        """Backlog per connection and state, with the created_at of each group's first-arrived job."""
        with self._read() as conn:
            rows = conn.execute(sql.COUNTS).fetchall()
        return [StateCount(row[0], sql.STATES[row[1]], row[2], sql.float_or_none(row[3])) for row in rows]

    def backlog(self, connection: str | None = None) -> int:
        """READY plus LEASED jobs (of one connection, or all): what is still to deliver."""
        with self._read() as conn:
            if connection is None:
                return int(conn.execute(sql.BACKLOG_ALL).fetchone()[0])
            return int(conn.execute(sql.BACKLOG_ONE, (connection,)).fetchone()[0])

    def dead(self, where: DeadFilter, limit: int = 100, offset: int = 0) -> list[Job]:
        """Dead jobs matching ``where``, oldest first."""
        if limit <= 0:
            self._check_open()
            return []
        query, params = sql.select_dead(where, limit, max(0, offset))
        with self._read() as conn:
            rows = conn.execute(query, params).fetchall()
        return [sql.to_job(row) for row in rows]

    def redrive(self, where: DeadFilter, now: float) -> int:
        """Make matching dead jobs READY again with attempts and throttles reset; how many."""
        query, params = sql.redrive_dead(where, now)
        with self._write() as conn:
            return conn.execute(query, params).rowcount

    def purge(self, where: DeadFilter) -> int:
        """Delete matching dead jobs; how many."""
        query, params = sql.purge_dead(where)
        with self._write() as conn:
            return conn.execute(query, params).rowcount

    def failing_jobs(self, connection: str) -> list[Job]:
        """READY jobs that already failed or were throttled (attempts or throttles > 0), by id."""
        with self._read() as conn:
            return [sql.to_job(row) for row in conn.execute(sql.FAILING, (connection,))]

    def erase(self, connection: str, profile_keys: Sequence[str], before_id: int, keep_kind: str) -> list[Job]:
        """Delete the READY and DEAD jobs of these profiles older than ``before_id``; the deleted, by id."""
        with self._write() as conn:
            params = (connection, before_id, keep_kind, json.dumps(list(profile_keys)))
            rows = conn.execute(sql.ERASE, params).fetchall()
        return sorted(map(sql.to_job, rows), key=_job_id)

    def forget_before(self, cutoff: float) -> int:
        """Drop dedup memory of keys first seen before ``cutoff``; how many."""
        with self._write() as conn:
            return conn.execute(sql.FORGET, (cutoff,)).rowcount

    def close(self) -> None:
        """Close the connection; later calls raise StoreClosedError (closing twice is harmless)."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _new_in_call(jobs: Sequence[NewJob], known: set[tuple[str, str]]) -> list[NewJob]:
    """The jobs of one call whose keys are neither remembered nor taken by an earlier job.

    Adds the keys it keeps to ``known``, so that a later call of the same transaction (or a key
    repeated within this call) sees them as repeats.
    """
    new: list[NewJob] = []
    for job in jobs:
        pair = (job.connection, job.key)
        if pair not in known:
            known.add(pair)
            new.append(job)
    return new


def _keys_by_connection(jobs: Sequence[NewJob]) -> dict[str, list[str]]:
    keys: dict[str, list[str]] = {}
    for job in jobs:
        keys.setdefault(job.connection, []).append(job.key)
    return keys


def _remember(conn: sqlite3.Connection, jobs: list[NewJob], now: float, cutoff: float) -> int:
    """Remember the keys of ``jobs`` from ``now`` (those forgotten since ``cutoff`` anew); how
    many keys that added or renewed (a key remembered since the cutoff is left alone)."""
    changed = 0
    for connection, keys in _keys_by_connection(jobs).items():
        changed += conn.execute(sql.REMEMBER_KEYS, (connection, now, json.dumps(keys), cutoff)).rowcount
    return changed


def _remember_if_all_new(conn: sqlite3.Connection, jobs: list[NewJob], now: float, cutoff: float) -> bool:
    """Remember every key of ``jobs`` if none is a repeat; False (nothing remembered) otherwise.

    The common case, a batch seen for the first time, then costs one statement on ``seen``
    instead of a lookup and an insert (the lookup was a tenth of an enqueue's time). When a key
    was already there, or repeats within ``jobs``, the savepoint undoes it and the caller looks
    each key up.
    """
    conn.execute("SAVEPOINT remember_all")
    if _remember(conn, jobs, now, cutoff) == len(jobs):
        conn.execute("RELEASE remember_all")
        return True
    conn.execute("ROLLBACK TO remember_all")
    conn.execute("RELEASE remember_all")
    return False


def _known(conn: sqlite3.Connection, jobs: list[NewJob], cutoff: float) -> set[tuple[str, str]]:
    """The (connection, key) pairs of ``jobs`` that are still remembered.

    One lookup per connection (a call usually has one) instead of one per job; the caller's
    write lock keeps the answer true until the jobs are inserted.
    """
    known: set[tuple[str, str]] = set()
    for connection, keys in _keys_by_connection(jobs).items():
        rows = conn.execute(sql.KNOWN_KEYS, (connection, json.dumps(keys), cutoff))
        known.update((connection, row[0]) for row in rows)
    return known


def _insert_jobs(conn: sqlite3.Connection, jobs: list[NewJob], now: float) -> None:
    """Insert ``jobs`` in order (so ids follow it), a few statements of many rows each.

    Not ``executemany``: Python's sqlite3 releases the GIL around every step, and executemany
    steps once per row, so each row would hand the GIL to the event loop and wait to get it
    back (half the store thread's time under load). A multi-row INSERT is one step.
    """
    for start in range(0, len(jobs), sql.ROWS_PER_INSERT):
        chunk = jobs[start : start + sql.ROWS_PER_INSERT]
        params = [value for job in chunk for value in _insert_row(job, now)]
        conn.execute(sql.insert_jobs(len(chunk)), params)


def _insert_row(job: NewJob, now: float) -> tuple[str, str, str, str, bytes, float, float]:
    return (job.connection, job.key, job.profile_key, job.kind, job.payload, now, job.run_at)


def _job_id(job: Job) -> int:
    return job.id


def _no_epoch(epoch: int | None) -> None:
    """SQLite has no delivery leases: one ``serve`` per file (``OwnerLock``) delivers everything."""
    if epoch is not None:
        raise ValueError("a SQLite store has no delivery leases; epoch must be None")
