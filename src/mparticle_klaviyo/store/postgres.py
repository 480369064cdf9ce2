"""The PostgreSQL job store: the same contract as SQLite's, on a database many nodes share.

Synchronous (psycopg 3 with its connection pool), like the SQLite store, and safe to call from
several threads (each call takes its own pooled connection): the service runs it on two of
``AsyncStore``'s lanes, ingest's enqueues on one and delivery on the other, so a claim never
waits behind an enqueue. One implementation serves the service, the CLI and the contract suite.

Many nodes: delivery for each Klaviyo account is leased to one node at a time, and a claim or
settle given the lease's epoch is refused (``LeaseLostError``) once the lease moved on
(store/postgres_leases.py).

Per-profile order between concurrent writers. Invariant: *a profile's jobs are claimed in the
order they were accepted* (one connection's profile key; "accepted" = the enqueue committed),
even when several nodes enqueue that profile's batches at once. A sequence alone does not give
it: transaction A may draw id 100, B id 101 and commit first, and a claim between the two
commits would take 101 before 100 exists for it. So an enqueue row-locks a ``profile_turns``
row per profile it stores (sorted, so two enqueues cannot deadlock) *before* COPY draws the
ids, and holds the locks until it commits. A second enqueue of the profile waits for the first
to commit, so it draws larger ids and commits later: per profile, id order is commit order,
and a claim (``ORDER BY id`` in one snapshot) that sees a profile's job sees every earlier one.
(The job_counts trigger's row lock queues a connection's enqueues too, but only at the end of
the insert, after the ids are drawn: too late for this.) The turns add no wait between enqueues
of different profiles. Jobs without a profile key take no turn (nothing orders them).

Every call is one transaction on a connection from the pool. A connection the server dropped is
thrown away by the pool and the call fails with ``StoreUnreachableError`` (the service holds
ingest for a few seconds, then tries again on a fresh connection). Errors never show the
URL's password (``PostgresLocation.scrub``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec
import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from mparticle_klaviyo.store import postgres_leases as leases
from mparticle_klaviyo.store import postgres_sql as sql
from mparticle_klaviyo.store.base import DeadFilter, EnqueueResult, Job, NewJob, StateCount
from mparticle_klaviyo.store.errors import StoreClosedError, StoreError, StoreUnreachableError
from mparticle_klaviyo.store.location import PostgresLocation, parse_store
from mparticle_klaviyo.store.postgres_schema import migrate
from mparticle_klaviyo.store.rows import STATES, to_job

DEFAULT_DEDUP_WINDOW_S = 7 * 86400.0
# Seconds to wait for the server when connecting, and for a connection from the pool: an
# enqueue waits at most this long before ingest answers 503 while the server is down.
CONNECT_TIMEOUT_S = 5
POOL_TIMEOUT_S = 5.0
APPLICATION_NAME = "mparticle-klaviyo"
# One connection is kept open; under load AsyncStore's two lanes (ingest, delivery) hold one
# each, and two more let the lease heartbeat and a console view call in without queueing.
POOL_MIN_SIZE, POOL_MAX_SIZE = 1, 4

Cursor = psycopg.Cursor[Any]


class PostgresJobStore:
    """``JobStore`` on a PostgreSQL database (the current schema of the URL's connection)."""

    def __init__(self, location: PostgresLocation | str, *, dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S) -> None:
        if dedup_window_s < 0:
            raise ValueError("dedup_window_s must be >= 0")
        self.location = _location(location)
        self.dedup_window_s = dedup_window_s
        self.schema_version = migrate_database(self.location)
        self._lock = threading.Lock()
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = self._open_pool()

    def _open_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self.location.url.reveal(),
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            kwargs=connect_defaults(self.location),
            timeout=POOL_TIMEOUT_S,
            name="mparticle-klaviyo-store",
            open=False,
        )
        try:
            pool.open(wait=True, timeout=POOL_TIMEOUT_S)
        except PoolTimeout as error:
            pool.close()
            raise StoreUnreachableError(self.location.scrub(str(error))) from None
        return pool

    def __repr__(self) -> str:
        return f"PostgresJobStore({self.location.shown!r})"

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        """A cursor in one transaction, committed when the block ends; driver failures made ours."""
        pool = self._pool
        if pool is None:
            raise StoreClosedError()
        try:
            with pool.connection() as conn:
                try:
                    with conn.transaction(), conn.cursor() as cursor:
                        yield cursor
                except psycopg.OperationalError as error:
                    if not conn.broken:
                        raise  # e.g. a statement timeout: the server is there
                    raise StoreUnreachableError(self.location.scrub(str(error))) from None
        except PoolTimeout as error:
            # No connection within POOL_TIMEOUT_S: the pool could not reach the server.
            raise StoreUnreachableError(self.location.scrub(str(error))) from None

    def enqueue(self, jobs: Sequence[NewJob], now: float) -> EnqueueResult:
        """Store new jobs in one durable transaction, skipping (connection, key) repeats."""
        return self.enqueue_many([jobs], now)[0]

    def enqueue_many(self, calls: Sequence[Sequence[NewJob]], now: float) -> list[EnqueueResult]:
        """``enqueue`` each of ``calls`` in order, in one durable transaction (group commit)."""
        if not any(calls):
            self._check_open()
            return [EnqueueResult(stored=0, duplicates=0) for _ in calls]
        taken: set[tuple[str, str]] = set()
        firsts = [_first_in_group(jobs, taken) for jobs in calls]
        with self._transaction() as cursor:
            fresh = _remember(cursor, [job for jobs in firsts for job in jobs], now, now - self.dedup_window_s)
            news = [[job for job in jobs if (job.connection, job.key) in fresh] for jobs in firsts]
            _take_turns(cursor, [job for jobs in news for job in jobs], now)
            _copy_jobs(cursor, [job for jobs in news for job in jobs], now)
        return [
            EnqueueResult(stored=len(new), duplicates=len(jobs) - len(new))
            for jobs, new in zip(calls, news, strict=True)
        ]

    def claim(self, connection: str, limit: int, lease_s: float, now: float, *, epoch: int | None = None) -> list[Job]:
        """Lease up to ``limit`` due READY jobs of ``connection``, oldest first (locked rows skipped).

        With ``epoch``, the jobs record it, and the claim is refused (``LeaseLostError``) unless
        that delivery lease is current.
        """
        if limit <= 0:
            self._check_open()
            return []
        params = {"connection": connection, "now": now, "limit": limit, "lease_until": now + lease_s, "epoch": epoch}
        with self._transaction() as cursor:
            leases.check(cursor, epoch)
            rows = cursor.execute(sql.CLAIM, params).fetchall()
        jobs = sorted(map(to_job, rows), key=_job_id)
        return jobs if epoch is None else [msgspec.structs.replace(job, epoch=epoch) for job in jobs]

    def ack(self, ids: Sequence[int], *, epoch: int | None = None) -> None:
        """Delete delivered jobs; dead ones are left alone (only redrive and purge touch the DLQ).

        With ``epoch``: only jobs claimed under it, and only while it is current (else ``LeaseLostError``).
        """
        self._write(sql.ACK, {"ids": list(ids), "epoch": epoch}, epoch)

    def retry(self, ids: Sequence[int], run_at: float, error: str, failed: bool, *, epoch: int | None = None) -> None:
        """Return live (leased or ready) jobs to READY, due at ``run_at``; count an attempt or a throttle."""
        params = {"ids": list(ids), "run_at": run_at, "error": error, "attempts": int(failed), "epoch": epoch}
        self._write(sql.RETRY, {**params, "throttles": int(not failed)}, epoch)

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
        """Move live jobs to DEAD with a reason and Klaviyo's answer (a dead job keeps its first reason)."""
        params = {"ids": list(ids), "reason": reason, "detail": detail, "now": now, "attempts": int(failed)}
        self._write(sql.BURY, {**params, "epoch": epoch}, epoch)

    def release(self, ids: Sequence[int], *, epoch: int | None = None) -> None:
        """Return leased jobs to READY as they were (graceful shutdown); counts nothing."""
        self._write(sql.RELEASE, {"ids": list(ids), "epoch": epoch}, epoch)

    def release_expired(self, now: float) -> int:
        """Return jobs whose lease has expired to READY (crash recovery); how many."""
        return self._write(sql.RELEASE_EXPIRED, {"now": now})

    def hold_leases(
        self, node: str, accounts: Mapping[str, Sequence[str]], held: Mapping[str, int], now: float, ttl: float
    ) -> dict[str, int]:
        """One heartbeat of ``node``: renew, balance and take delivery leases; those held, account -> epoch.

        ``accounts`` maps each account to its connections; see store/postgres_leases.py.
        """
        with self._transaction() as cursor:
            return leases.hold(cursor, node, accounts, held, now, ttl)

    def give_up_leases(self, node: str, accounts: Sequence[str]) -> None:
        """Expire ``node``'s leases of ``accounts`` and forget the node (a graceful stop)."""
        with self._transaction() as cursor:
            leases.give_up(cursor, node, accounts)

    def lease_holders(self) -> list[tuple[str, str, int, float]]:
        """Every account's lease: (account, node, epoch, expires_at), by account."""
        return [(row[0], row[1], int(row[2]), float(row[3])) for row in self._rows(leases.HOLDERS, {})]

    def live_nodes(self, now: float) -> list[tuple[str, float]]:
        """The nodes whose last heartbeat has not expired at ``now``: (node, expires_at), by node."""
        return [(row[0], float(row[1])) for row in self._rows(leases.NODES, {"now": now})]

    def connections(self) -> list[str]:
        """Connections that have jobs in any state."""
        return [row[0] for row in self._rows(sql.CONNECTIONS, {})]

    def counts(self) -> list[StateCount]:
        """Backlog per connection and state, with the created_at of each group's first-arrived job."""
        return [StateCount(row[0], STATES[row[1]], row[2], row[3]) for row in self._rows(sql.COUNTS, {})]

    def backlog(self, connection: str | None = None) -> int:
        """READY plus LEASED jobs (of one connection, or all): what is still to deliver."""
        if connection is None:
            return int(self._rows(sql.BACKLOG_ALL, {})[0][0])
        return int(self._rows(sql.BACKLOG_ONE, {"connection": connection})[0][0])

    def dead(self, where: DeadFilter, limit: int = 100, offset: int = 0) -> list[Job]:
        """Dead jobs matching ``where``, oldest first."""
        if limit <= 0:
            self._check_open()
            return []
        return [to_job(row) for row in self._rows(*sql.select_dead(where, limit, max(0, offset)))]

    def redrive(self, where: DeadFilter, now: float) -> int:
        """Make matching dead jobs READY again with attempts and throttles reset; how many."""
        return self._write(*sql.redrive_dead(where, now))

    def purge(self, where: DeadFilter) -> int:
        """Delete matching dead jobs; how many."""
        return self._write(*sql.purge_dead(where))

    def failing_jobs(self, connection: str) -> list[Job]:
        """READY jobs that already failed or were throttled (attempts or throttles > 0), by id."""
        return [to_job(row) for row in self._rows(sql.FAILING, {"connection": connection})]

    def erase(self, connection: str, profile_keys: Sequence[str], before_id: int, keep_kind: str) -> list[Job]:
        """Delete the READY and DEAD jobs of these profiles older than ``before_id``; the deleted, by id."""
        params = {
            "connection": connection,
            "before_id": before_id,
            "keep_kind": keep_kind,
            "profile_keys": list(profile_keys),
        }
        return sorted(map(to_job, self._rows(sql.ERASE, params)), key=_job_id)

    def forget_before(self, cutoff: float) -> int:
        """Drop dedup memory of keys first seen before ``cutoff`` (and profiles' idle turn rows); how many keys."""
        with self._transaction() as cursor:
            cursor.execute(sql.FORGET_PROFILE_TURNS, {"cutoff": cutoff})
            return cursor.execute(sql.FORGET, {"cutoff": cutoff}).rowcount

    def close(self) -> None:
        """Close the pool's connections; later calls raise StoreClosedError (closing twice is harmless)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _check_open(self) -> None:
        if self._pool is None:
            raise StoreClosedError()

    def _write(self, query: str, params: dict[str, Any], epoch: int | None = None) -> int:
        """Run one changing statement in its own transaction (refused unless ``epoch``, if any, is current)."""
        with self._transaction() as cursor:
            leases.check(cursor, epoch)
            return cursor.execute(query, params).rowcount

    def _rows(self, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        with self._transaction() as cursor:
            return cursor.execute(query, params).fetchall()


def migrate_database(location: PostgresLocation | str) -> int:
    """Apply the store's migrations on one connection of its own; the schema version."""
    where = _location(location)
    try:
        with psycopg.connect(where.url.reveal(), **connect_defaults(where)) as conn:
            return migrate(conn)
    except psycopg.OperationalError as error:
        raise StoreUnreachableError(where.scrub(str(error))) from None
    except psycopg.Error as error:  # a malformed URL, a refused login, a failed migration
        raise StoreError(f"cannot open the job store database: {where.scrub(str(error))}") from None


def connect_defaults(location: PostgresLocation) -> dict[str, Any]:
    """Connection parameters we set where the URL does not: a connect timeout, and an application name."""
    # The name tells an operator looking at pg_stat_activity whose sessions these are.
    given = conninfo_to_dict(location.url.reveal())
    defaults: dict[str, Any] = {"connect_timeout": CONNECT_TIMEOUT_S, "application_name": APPLICATION_NAME}
    return {name: value for name, value in defaults.items() if name not in given}


def _location(location: PostgresLocation | str) -> PostgresLocation:
    parsed = parse_store(location) if isinstance(location, str) else location
    if not isinstance(parsed, PostgresLocation):
        raise ValueError("not a postgresql:// URL")
    return parsed


def _first_in_group(jobs: Sequence[NewJob], taken: set[tuple[str, str]]) -> list[NewJob]:
    """The jobs of one call whose keys no earlier job of the group (this call or an earlier one) has.

    Adds their keys to ``taken``. Whether each key is new to the store is for the seen table to say.
    """
    firsts: list[NewJob] = []
    for job in jobs:
        pair = (job.connection, job.key)
        if pair not in taken:
            taken.add(pair)
            firsts.append(job)
    return firsts


def _remember(cursor: Cursor, jobs: list[NewJob], now: float, cutoff: float) -> set[tuple[str, str]]:
    """Remember the keys of ``jobs`` (each once) from ``now``; those that were not remembered yet."""
    params = {
        "connections": [job.connection for job in jobs],
        "keys": [job.key for job in jobs],
        "now": now,
        "cutoff": cutoff,
    }
    return {(row[0], row[1]) for row in cursor.execute(sql.REMEMBER_KEYS, params).fetchall()}


def _take_turns(cursor: Cursor, jobs: list[NewJob], now: float) -> None:
    """Lock the turn rows of the profiles of ``jobs`` until the transaction ends (see the module docstring)."""
    profiles = sorted({(job.connection, job.profile_key) for job in jobs if job.profile_key})
    if profiles:
        params = {"connections": [c for c, _ in profiles], "profiles": [p for _, p in profiles], "now": now}
        cursor.execute(sql.TAKE_PROFILE_TURNS, params)


def _copy_jobs(cursor: Cursor, jobs: list[NewJob], now: float) -> None:
    """Insert ``jobs`` in order (so ids follow it) with one COPY."""
    if not jobs:
        return
    with cursor.copy(sql.COPY_JOBS) as copy:
        for job in jobs:
            copy.write_row((job.connection, job.key, job.profile_key, job.kind, job.payload, now, job.run_at))


def _job_id(job: Job) -> int:
    return job.id
