"""SQL of the SQLite job store (rows become ``Job``s through store/rows.py, shared with PostgreSQL).

Every statement is a constant (or one of the eight DeadFilter variants) so that sqlite3's
statement cache keeps it prepared. Id lists travel as one JSON array bound to ``json_each``,
which keeps a 1,000-id ack a single statement without building SQL of varying length.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

from mparticle_klaviyo.store.base import DeadFilter, JobState
from mparticle_klaviyo.store.rows import JOB_COLUMNS as JOB_COLUMNS
from mparticle_klaviyo.store.rows import STATES as STATES
from mparticle_klaviyo.store.rows import float_or_none as float_or_none
from mparticle_klaviyo.store.rows import to_job as to_job

READY, LEASED, DEAD = int(JobState.READY), int(JobState.LEASED), int(JobState.DEAD)

_IDS = "id IN (SELECT value FROM json_each(?))"

# Keys of one connection (a JSON array) that are still remembered (first seen at or after the cutoff).
KNOWN_KEYS = "SELECT key FROM seen WHERE connection = ? AND key IN (SELECT value FROM json_each(?)) AND first_seen >= ?"
# Rows per INSERT statement: 7 parameters each stays far below SQLite's 32,766, and at most
# this many statement texts (one per remainder) sit in sqlite3's statement cache.
ROWS_PER_INSERT = 64
_INSERT_JOBS = "INSERT INTO jobs (connection, key, profile_key, kind, payload, created_at, run_at) VALUES "
# Parameters: connection, now, keys (a JSON array), cutoff. A key remembered since before the
# cutoff was forgotten, so it starts a new window from now. "WHERE true" is SQLite's required
# disambiguation between a join's ON and the upsert's ON CONFLICT.
REMEMBER_KEYS = """
INSERT INTO seen (connection, key, first_seen) SELECT ?1, value, ?2 FROM json_each(?3) WHERE true
ON CONFLICT (connection, key) DO UPDATE SET first_seen = excluded.first_seen WHERE seen.first_seen < ?4
"""
# Inserts are counted here, once per call and connection, rather than by a trigger per row: the
# trigger cost ~15% of enqueue time, and enqueue is the only statement that inserts jobs.
COUNT_INSERTED = f"""
INSERT INTO job_counts (connection, state, n) VALUES (?, {READY}, ?)
ON CONFLICT (connection, state) DO UPDATE SET n = n + excluded.n
"""
CLAIM = f"""
UPDATE jobs SET state = {LEASED}, lease_until = ?
WHERE id IN (SELECT id FROM jobs WHERE connection = ? AND state = {READY} AND run_at <= ? ORDER BY id LIMIT ?)
RETURNING {JOB_COLUMNS}
"""
# ack, retry and bury leave DEAD jobs alone: only redrive and purge act on the dead-letter queue.
ACK = f"DELETE FROM jobs WHERE {_IDS} AND state != {DEAD}"
RETRY = f"""
UPDATE jobs SET state = {READY}, lease_until = NULL, run_at = ?, last_error = ?,
    attempts = attempts + ?, throttles = throttles + ?
WHERE {_IDS} AND state != {DEAD}
"""
BURY = f"""
UPDATE jobs SET state = {DEAD}, lease_until = NULL, dead_reason = ?, last_error = ?, dead_at = ?,
    attempts = attempts + ?
WHERE {_IDS} AND state != {DEAD}
"""
RELEASE = f"UPDATE jobs SET state = {READY}, lease_until = NULL WHERE {_IDS} AND state = {LEASED}"
RELEASE_EXPIRED = f"UPDATE jobs SET state = {READY}, lease_until = NULL WHERE state = {LEASED} AND lease_until <= ?"
FAILING = f"""
SELECT {JOB_COLUMNS} FROM jobs
WHERE connection = ? AND state = {READY} AND (attempts > 0 OR throttles > 0) ORDER BY id
"""
FORGET = "DELETE FROM seen WHERE first_seen < ?"
# A scan of the connection's jobs: erasures are rare (Klaviyo takes 60 a minute), and an index
# on profile_key would cost every enqueue.
ERASE = f"""
DELETE FROM jobs
WHERE connection = ? AND id < ? AND state != {LEASED} AND kind != ?
    AND profile_key IN (SELECT value FROM json_each(?))
RETURNING {JOB_COLUMNS}
"""

CONNECTIONS = "SELECT connection FROM job_counts GROUP BY connection HAVING sum(n) > 0 ORDER BY connection"
BACKLOG_ALL = f"SELECT coalesce(sum(n), 0) FROM job_counts WHERE state IN ({READY}, {LEASED})"
BACKLOG_ONE = f"{BACKLOG_ALL} AND connection = ?"


def _oldest(state: int) -> str:
    # A literal state per branch, so that each subquery can use that state's partial index.
    return (
        f"WHEN {state} THEN (SELECT created_at FROM jobs WHERE id ="
        f" (SELECT min(id) FROM jobs WHERE connection = c.connection AND state = {state}))"
    )


# "Oldest" is the job that arrived first (smallest id); its created_at is the backlog's age.
COUNTS = f"""
SELECT c.connection, c.state, c.n, CASE c.state {_oldest(READY)} {_oldest(LEASED)} {_oldest(DEAD)} END
FROM job_counts c WHERE c.n > 0 ORDER BY c.connection, c.state
"""


@functools.cache
def insert_jobs(rows: int) -> str:
    """An INSERT of ``rows`` jobs (7 parameters a row, in JOB_COLUMNS' order from connection to run_at)."""
    if not 1 <= rows <= ROWS_PER_INSERT:
        raise ValueError(f"rows must be 1..{ROWS_PER_INSERT}, not {rows}")
    return _INSERT_JOBS + ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)


def id_list(ids: Sequence[int]) -> str:
    """Ids as one JSON array for ``json_each``."""
    return json.dumps([int(i) for i in ids])


def _dead_where(where: DeadFilter) -> tuple[str, list[object]]:
    # Only the clauses a filter needs, so that SQLite picks the index that fits (8 variants at most).
    clauses: list[str] = [f"state = {DEAD}"]
    params: list[object] = []
    if where.connection is not None:
        clauses.append("connection = ?")
        params.append(where.connection)
    if where.reason is not None:
        # Whole ":"-separated parts only: "http_503" matches "retries_exhausted:http_503" but
        # "http_50" does not. instr, not LIKE: "_" is a LIKE wildcard and reasons are full of it.
        clauses.append("instr(':' || dead_reason || ':', ':' || ? || ':') > 0")
        params.append(where.reason)
    if where.ids is not None:
        clauses.append(_IDS)
        params.append(id_list(where.ids))
    return " AND ".join(clauses), params


def select_dead(where: DeadFilter, limit: int, offset: int) -> tuple[str, list[object]]:
    """SQL and parameters listing the dead jobs ``where`` names, oldest first, one page."""
    clause, params = _dead_where(where)
    return f"SELECT {JOB_COLUMNS} FROM jobs WHERE {clause} ORDER BY id LIMIT ? OFFSET ?", [*params, limit, offset]


def redrive_dead(where: DeadFilter, now: float) -> tuple[str, list[object]]:
    """SQL and parameters making the dead jobs ``where`` names READY again, as new."""
    clause, params = _dead_where(where)
    fresh = f"state = {READY}, attempts = 0, throttles = 0, run_at = ?, lease_until = NULL, dead_reason = NULL"
    return f"UPDATE jobs SET {fresh}, dead_at = NULL WHERE {clause}", [now, *params]


def purge_dead(where: DeadFilter) -> tuple[str, list[object]]:
    """SQL and parameters deleting the dead jobs ``where`` names."""
    clause, params = _dead_where(where)
    return f"DELETE FROM jobs WHERE {clause}", params
