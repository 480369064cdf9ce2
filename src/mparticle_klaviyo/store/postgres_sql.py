"""SQL of the PostgreSQL job store.

Every statement is a constant (or one of the eight DeadFilter variants), so psycopg prepares it
on the server after a few uses. Lists (ids, keys) travel as one array parameter (``= ANY``,
``unnest``): a 1,000-id ack is one statement of fixed text.
"""

from __future__ import annotations

from mparticle_klaviyo.store.base import DeadFilter, JobState
from mparticle_klaviyo.store.rows import JOB_COLUMNS

READY, LEASED, DEAD = int(JobState.READY), int(JobState.LEASED), int(JobState.DEAD)

# Parameters: connections and keys (parallel text arrays, each pair once), now, cutoff. The upsert
# is the dedup arbiter, also between concurrent transactions: a key another transaction is
# inserting waits for it, then conflicts. It returns the keys that are new here: never seen, or
# forgotten (first seen before the cutoff, so a new window starts now). Sorted, so that
# concurrent enqueues lock seen rows in one order and cannot deadlock.
REMEMBER_KEYS = """
INSERT INTO seen AS s (connection, key, first_seen)
SELECT connection, key, %(now)s FROM unnest(%(connections)s::text[], %(keys)s::text[]) AS k (connection, key)
ORDER BY connection, key
ON CONFLICT (connection, key) DO UPDATE SET first_seen = excluded.first_seen WHERE s.first_seen < %(cutoff)s
RETURNING connection, key
"""
# Parameters: connections and profile keys (parallel, each pair once), now. Row-locks each profile's
# turn row until the enqueue commits, in one order (no deadlock), before the COPY draws ids: a
# second transaction enqueueing one of these profiles waits here, so its ids are drawn after this
# one committed (store/postgres.py explains the ordering invariant). Row locks, not advisory
# locks: a group commit of thousands of profiles would overflow the server's lock table.
TAKE_PROFILE_TURNS = """
INSERT INTO profile_turns AS p (connection, profile_key, touched_at)
SELECT connection, profile_key, %(now)s
FROM unnest(%(connections)s::text[], %(profiles)s::text[]) AS t (connection, profile_key)
ORDER BY connection COLLATE "C", profile_key COLLATE "C"
ON CONFLICT (connection, profile_key) DO UPDATE SET touched_at = excluded.touched_at
"""
FORGET_PROFILE_TURNS = "DELETE FROM profile_turns WHERE touched_at < %(cutoff)s"
# COPY inserts rows in the order written, so ids (the identity's defaults) follow it.
COPY_JOBS = "COPY jobs (connection, key, profile_key, kind, payload, created_at, run_at) FROM STDIN"

# SKIP LOCKED: a row another transaction is claiming (or changing) is passed over, not waited
# for; ORDER BY id keeps arrival order among the rest. RETURNING yields rows in no promised order.
CLAIM = f"""
WITH picked AS (
    SELECT id FROM jobs
    WHERE connection = %(connection)s AND state = {READY} AND run_at <= %(now)s
    ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET state = {LEASED}, lease_until = %(lease_until)s, epoch = %(epoch)s::bigint
FROM picked WHERE jobs.id = picked.id
RETURNING {", ".join(f"jobs.{column.strip()}" for column in JOB_COLUMNS.split(","))}
"""
_IDS = "id = ANY(%(ids)s::bigint[])"
# A settle under a lease epoch touches only jobs claimed under it (store/postgres_leases.py); without
# one (a single node, an operator's tool) any job. A job claimed again under a newer epoch is not ours.
_FENCE = "(%(epoch)s::bigint IS NULL OR epoch = %(epoch)s::bigint)"
# ack, retry and bury leave DEAD jobs alone: only redrive and purge act on the dead-letter queue.
ACK = f"DELETE FROM jobs WHERE {_IDS} AND state <> {DEAD} AND {_FENCE}"
RETRY = f"""
UPDATE jobs SET state = {READY}, lease_until = NULL, run_at = %(run_at)s, last_error = %(error)s,
    attempts = attempts + %(attempts)s, throttles = throttles + %(throttles)s
WHERE {_IDS} AND state <> {DEAD} AND {_FENCE}
"""
BURY = f"""
UPDATE jobs SET state = {DEAD}, lease_until = NULL, dead_reason = %(reason)s, last_error = %(detail)s,
    dead_at = %(now)s, attempts = attempts + %(attempts)s
WHERE {_IDS} AND state <> {DEAD} AND {_FENCE}
"""
RELEASE = f"UPDATE jobs SET state = {READY}, lease_until = NULL WHERE {_IDS} AND state = {LEASED} AND {_FENCE}"
RELEASE_EXPIRED = (
    f"UPDATE jobs SET state = {READY}, lease_until = NULL WHERE state = {LEASED} AND lease_until <= %(now)s"
)
FAILING = f"""
SELECT {JOB_COLUMNS} FROM jobs
WHERE connection = %(connection)s AND state = {READY} AND (attempts > 0 OR throttles > 0) ORDER BY id
"""
FORGET = "DELETE FROM seen WHERE first_seen < %(cutoff)s"
# A scan of the connection's jobs: erasures are rare, and an index on profile_key would cost every enqueue.
ERASE = f"""
DELETE FROM jobs
WHERE connection = %(connection)s AND id < %(before_id)s AND state <> {LEASED} AND kind <> %(keep_kind)s
    AND profile_key = ANY(%(profile_keys)s::text[])
RETURNING {JOB_COLUMNS}
"""

CONNECTIONS = "SELECT connection FROM job_counts GROUP BY connection HAVING sum(n) > 0 ORDER BY connection"
BACKLOG_ALL = f"SELECT coalesce(sum(n), 0)::bigint FROM job_counts WHERE state IN ({READY}, {LEASED})"
BACKLOG_ONE = f"{BACKLOG_ALL} AND connection = %(connection)s"


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


def _dead_where(where: DeadFilter) -> tuple[str, dict[str, object]]:
    # Only the clauses a filter needs, so that the planner picks the index that fits.
    clauses: list[str] = [f"state = {DEAD}"]
    params: dict[str, object] = {}
    if where.connection is not None:
        clauses.append("connection = %(connection)s")
        params["connection"] = where.connection
    if where.reason is not None:
        # Whole ":"-separated parts only: "http_503" matches "retries_exhausted:http_503" but
        # "http_50" does not. strpos, not LIKE: "_" is a LIKE wildcard and reasons are full of it.
        clauses.append("strpos(':' || dead_reason || ':', ':' || %(reason)s || ':') > 0")
        params["reason"] = where.reason
    if where.ids is not None:
        clauses.append(_IDS)
        params["ids"] = list(where.ids)
    return " AND ".join(clauses), params


def select_dead(where: DeadFilter, limit: int, offset: int) -> tuple[str, dict[str, object]]:
    """SQL and parameters listing the dead jobs ``where`` names, oldest first, one page."""
    clause, params = _dead_where(where)
    query = f"SELECT {JOB_COLUMNS} FROM jobs WHERE {clause} ORDER BY id LIMIT %(limit)s OFFSET %(offset)s"
    return query, {**params, "limit": limit, "offset": offset}


def redrive_dead(where: DeadFilter, now: float) -> tuple[str, dict[str, object]]:
    """SQL and parameters making the dead jobs ``where`` names READY again, as new."""
    clause, params = _dead_where(where)
    fresh = f"state = {READY}, attempts = 0, throttles = 0, run_at = %(now)s, lease_until = NULL, dead_reason = NULL"
    return f"UPDATE jobs SET {fresh}, dead_at = NULL WHERE {clause}", {**params, "now": now}


def purge_dead(where: DeadFilter) -> tuple[str, dict[str, object]]:
    """SQL and parameters deleting the dead jobs ``where`` names."""
    clause, params = _dead_where(where)
    return f"DELETE FROM jobs WHERE {clause}", params
