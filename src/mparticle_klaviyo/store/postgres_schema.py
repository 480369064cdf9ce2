"""The PostgreSQL job store's schema, its versioned migrations and how they are applied.

The tables live in the connection's current schema (the first of its ``search_path`` that
exists), so one database can hold several stores (``?options=-csearch_path%3Dname`` in the URL).

Migrations run at start, in one transaction that first takes a transaction-scoped advisory lock
on the schema: two processes starting at once queue on the lock, and the second finds the
schema up to date and applies nothing. PostgreSQL's DDL is transactional, so a migration that
fails leaves no half-made schema behind. ``schema_version`` keeps one row per applied step.
"""

from __future__ import annotations

from typing import Any

import psycopg

from mparticle_klaviyo.store.errors import SchemaVersionError, StoreError

# pg_advisory_xact_lock's first key: ours ("mpk"); the second is the schema's name hashed.
MIGRATION_LOCK = 0x6D706B

_VERSIONS = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    integer     PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""

# Times are epoch seconds in float8, as the contract's floats: exact round trips (timestamptz
# would round to microseconds). COLLATE "C": text compares and sorts by code point, as Python's
# str and SQLite do, and btree comparisons skip the locale.
_JOBS = """
CREATE TABLE jobs (
    id          bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- a sequence: never reused
    connection  text     COLLATE "C" NOT NULL,
    key         text     COLLATE "C" NOT NULL,
    profile_key text     COLLATE "C" NOT NULL,
    kind        text     COLLATE "C" NOT NULL,
    payload     bytea    NOT NULL,
    state       smallint NOT NULL DEFAULT 0 CHECK (state IN (0, 1, 3)),
    attempts    integer  NOT NULL DEFAULT 0,
    throttles   integer  NOT NULL DEFAULT 0,
    created_at  float8   NOT NULL,
    run_at      float8   NOT NULL,
    lease_until float8,
    last_error  text,
    dead_reason text,
    dead_at     float8
) WITH (
    -- A queue table: every row is inserted, updated a few times and deleted within minutes.
    -- The default (vacuum at 20% dead rows) lets a large backlog's dead tuples pile up.
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_vacuum_cost_delay = 0,
    fillfactor = 90  -- room for the HOT updates of claim, retry and release
)
"""

# Partial indexes, as in SQLite: a row costs index upkeep only while in the indexed state.
_INDEXES = (
    # claim: READY ids of one connection in order; run_at is carried so deferred rows are skipped cheaply.
    "CREATE INDEX jobs_ready ON jobs (connection, id) INCLUDE (run_at) WHERE state = 0",
    "CREATE INDEX jobs_failing ON jobs (connection, id) WHERE state = 0 AND (attempts > 0 OR throttles > 0)",
    "CREATE INDEX jobs_leased ON jobs (connection, id) WHERE state = 1",
    # release_expired looks across connections by lease end.
    "CREATE INDEX jobs_lease_end ON jobs (lease_until) WHERE state = 1",
    "CREATE INDEX jobs_dead ON jobs (connection, id) WHERE state = 3",
    "CREATE INDEX jobs_dead_all ON jobs (id) WHERE state = 3",
)

_SEEN = (
    """
    CREATE TABLE seen (
        connection text   COLLATE "C" NOT NULL,
        key        text   COLLATE "C" NOT NULL,
        first_seen float8 NOT NULL,
        PRIMARY KEY (connection, key)
    )
    """,
    "CREATE INDEX seen_first_seen ON seen (first_seen)",
)

# Row counts per (connection, state), kept in the changing statement's transaction, so counts()
# and backlog() read a handful of rows instead of counting a million. Statement-level triggers
# with transition tables: one upsert per (connection, state) a statement touched, not one per
# row (a 1,000-job claim is one trigger call). Rows are upserted in key order, so concurrent
# writers lock them in the same order and cannot deadlock on them.
# SET search_path FROM CURRENT: the function finds job_counts in the store's schema even when
# an operator's session (psql) with another search_path changes jobs.
_COUNTS = (
    """
    CREATE TABLE job_counts (
        connection text     COLLATE "C" NOT NULL,
        state      smallint NOT NULL,
        n          bigint   NOT NULL,
        PRIMARY KEY (connection, state)
    ) WITH (fillfactor = 50)
    """,
    """
    CREATE FUNCTION jobs_count() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO job_counts AS c (connection, state, n)
            SELECT connection, state, count(*) FROM new_rows GROUP BY connection, state ORDER BY connection, state
            ON CONFLICT (connection, state) DO UPDATE SET n = c.n + excluded.n;
        ELSIF TG_OP = 'DELETE' THEN
            INSERT INTO job_counts AS c (connection, state, n)
            SELECT connection, state, -count(*) FROM old_rows GROUP BY connection, state ORDER BY connection, state
            ON CONFLICT (connection, state) DO UPDATE SET n = c.n + excluded.n;
        ELSE
            INSERT INTO job_counts AS c (connection, state, n)
            SELECT connection, state, sum(n)::bigint FROM (
                SELECT connection, state, count(*) AS n FROM new_rows GROUP BY connection, state
                UNION ALL
                SELECT connection, state, -count(*) FROM old_rows GROUP BY connection, state
            ) AS changes
            GROUP BY connection, state HAVING sum(n) <> 0 ORDER BY connection, state
            ON CONFLICT (connection, state) DO UPDATE SET n = c.n + excluded.n;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    "CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs REFERENCING NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION jobs_count()",
    "CREATE TRIGGER jobs_count_update AFTER UPDATE ON jobs REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION jobs_count()",
    "CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs REFERENCING OLD TABLE AS old_rows"
    " FOR EACH STATEMENT EXECUTE FUNCTION jobs_count()",
)

# Version 2, many nodes on one database (store/postgres_leases.py, store/postgres.py's enqueue).
# Epochs come from one sequence, so an epoch names one lease term of one account, cluster-wide.
_CLUSTER = (
    "CREATE SEQUENCE lease_epochs",
    # One row per Klaviyo account ever leased; a lease given up or lapsed has expires_at <= now.
    """
    CREATE TABLE account_leases (
        account    text   COLLATE "C" PRIMARY KEY,
        node       text   COLLATE "C" NOT NULL,
        epoch      bigint NOT NULL,
        expires_at float8 NOT NULL
    )
    """,
    # Nodes that heartbeat: the live ones (expires_at > now) share the accounts.
    'CREATE TABLE nodes (node text COLLATE "C" PRIMARY KEY, expires_at float8 NOT NULL)',
    # The epoch of the lease a job was claimed under (NULL: claimed without one); settles check it.
    "ALTER TABLE jobs ADD COLUMN epoch bigint",
    # A row per profile that enqueues lock in turn: a profile's jobs get ids in commit order.
    """
    CREATE TABLE profile_turns (
        connection  text   COLLATE "C" NOT NULL,
        profile_key text   COLLATE "C" NOT NULL,
        touched_at  float8 NOT NULL,
        PRIMARY KEY (connection, profile_key)
    ) WITH (fillfactor = 70)
    """,
    "CREATE INDEX profile_turns_touched ON profile_turns (touched_at)",
)

# MIGRATIONS[v] takes a schema from version v to v + 1; append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = ((_JOBS, *_INDEXES, *_SEEN, *_COUNTS), _CLUSTER)
SCHEMA_VERSION = len(MIGRATIONS)

Connection = psycopg.Connection[Any]


def schema_version(conn: Connection) -> int:
    """The schema's applied version (0: none yet); reads without locking anything."""
    row = conn.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    found = conn.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()
    return 0 if found is None else int(found[0])


def migrate(conn: Connection) -> int:
    """Bring the schema up to SCHEMA_VERSION (once, however many processes try); the version.

    Raises ``SchemaVersionError`` for a schema newer than this code knows.
    """
    # Checked first without the lock, so opening an up-to-date store never waits on a migration.
    version = schema_version(conn)
    conn.commit()
    if version == SCHEMA_VERSION:
        return version
    with conn.transaction():
        _lock(conn)
        conn.execute(_VERSIONS)
        version = schema_version(conn)  # again under the lock: another process may have migrated
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(version, SCHEMA_VERSION)
        for number, step in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in step:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))
    return SCHEMA_VERSION


def _lock(conn: Connection) -> None:
    """Take the schema's migration lock until the transaction ends."""
    row = conn.execute("SELECT current_schema()").fetchone()
    if row is None or row[0] is None:
        raise StoreError("the job store's database has no schema to create tables in (check search_path)")
    conn.execute("SELECT pg_advisory_xact_lock(%s::integer, hashtext(%s))", (MIGRATION_LOCK, row[0]))
