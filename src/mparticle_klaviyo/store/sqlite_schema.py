"""The SQLite job store's schema, its migrations (``PRAGMA user_version``) and connection set-up.

Statements live in Python tuples rather than a ``.sql`` script because ``executescript`` commits
any open transaction first; each migration step must run inside one ``BEGIN IMMEDIATE`` instead,
so that two processes opening a fresh file at once cannot both create the schema.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from mparticle_klaviyo.store.errors import SchemaVersionError, StoreError

# STRICT tables need 3.37; UPDATE ... RETURNING needs 3.35.
MIN_SQLITE = (3, 37, 0)
BUSY_TIMEOUT_MS = 5000
# A checkpoint rewinds the WAL but never shrinks its file; truncate what a burst (a large purge,
# a long read blocking checkpoints) left behind down to this size.
WAL_SIZE_LIMIT = 64 * 1024 * 1024
SYNCHRONOUS_MODES = frozenset({"FULL", "NORMAL"})

_JOBS = """
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: an id is never reused after a delete
    connection  TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    profile_key TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    payload     BLOB    NOT NULL,
    state       INTEGER NOT NULL DEFAULT 0 CHECK (state IN (0, 1, 3)),
    attempts    INTEGER NOT NULL DEFAULT 0,
    throttles   INTEGER NOT NULL DEFAULT 0,
    created_at  REAL    NOT NULL,
    run_at      REAL    NOT NULL,
    lease_until REAL,
    last_error  TEXT,
    dead_reason TEXT,
    dead_at     REAL
) STRICT
"""

# Partial indexes: a row costs index upkeep only while it is in the indexed state, so the
# DEAD and "failing" indexes cost nothing on the hot path (enqueue -> claim -> ack).
_INDEXES = (
    # claim: walk READY ids of one connection in order; run_at is in the index so that rows
    # deferred into the future are skipped without reading the table row.
    "CREATE INDEX IF NOT EXISTS jobs_ready ON jobs (connection, id, run_at) WHERE state = 0",
    # failing_jobs: the query must repeat this WHERE term for term, or SQLite will not use it.
    "CREATE INDEX IF NOT EXISTS jobs_failing ON jobs (connection, id)"
    " WHERE state = 0 AND (attempts > 0 OR throttles > 0)",
    "CREATE INDEX IF NOT EXISTS jobs_leased ON jobs (connection, id, lease_until) WHERE state = 1",
    "CREATE INDEX IF NOT EXISTS jobs_dead ON jobs (connection, id) WHERE state = 3",
    # Without this one SQLite answers an unfiltered DLQ listing with a scan of the whole table.
    "CREATE INDEX IF NOT EXISTS jobs_dead_all ON jobs (id) WHERE state = 3",
)

_SEEN = (
    """
    CREATE TABLE IF NOT EXISTS seen (
        connection TEXT NOT NULL,
        key        TEXT NOT NULL,
        first_seen REAL NOT NULL,
        PRIMARY KEY (connection, key)
    ) STRICT, WITHOUT ROWID
    """,
    "CREATE INDEX IF NOT EXISTS seen_first_seen ON seen (first_seen)",
)

# Row counts per (connection, state), kept in the same transaction as the change (by triggers for
# updates and deletes, by enqueue for inserts), so counts() and backlog() read a handful of rows
# instead of counting a million.
_COUNTS = (
    """
    CREATE TABLE IF NOT EXISTS job_counts (
        connection TEXT    NOT NULL,
        state      INTEGER NOT NULL,
        n          INTEGER NOT NULL,
        PRIMARY KEY (connection, state)
    ) STRICT, WITHOUT ROWID
    """,
    """
    CREATE TRIGGER IF NOT EXISTS jobs_count_delete AFTER DELETE ON jobs BEGIN
        UPDATE job_counts SET n = n - 1 WHERE connection = OLD.connection AND state = OLD.state;
    END
    """,
    """
    CREATE TRIGGER IF NOT EXISTS jobs_count_update AFTER UPDATE OF state, connection ON jobs
    WHEN OLD.state IS NOT NEW.state OR OLD.connection IS NOT NEW.connection BEGIN
        UPDATE job_counts SET n = n - 1 WHERE connection = OLD.connection AND state = OLD.state;
        INSERT INTO job_counts (connection, state, n) VALUES (NEW.connection, NEW.state, 1)
        ON CONFLICT (connection, state) DO UPDATE SET n = n + 1;
    END
    """,
)

# MIGRATIONS[v] takes a database from user_version v to v + 1; append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = ((_JOBS, *_INDEXES, *_SEEN, *_COUNTS),)
SCHEMA_VERSION = len(MIGRATIONS)


def create_private(path: Path) -> None:
    """Create ``path`` readable by its owner only (it holds customer data); leave an existing file alone."""
    # SQLite gives the -wal and -shm files the database file's mode, so they are private too.
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with the given ``synchronous`` level and an up-to-date schema."""
    mode = synchronous.upper()
    if mode not in SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous must be one of {sorted(SYNCHRONOUS_MODES)}, not {synchronous!r}")
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StoreError(f"SQLite >= {'.'.join(map(str, MIN_SQLITE))} is needed; found {sqlite3.sqlite_version}")
    create_private(path)
    # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves; check_same_thread=False:
    # the store serialises calls with its own lock, and asyncio callers close it from a worker thread.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        _configure(conn, mode)
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection, synchronous: str) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot switch the job store to WAL mode (journal_mode is {mode})")
    # Checked against SYNCHRONOUS_MODES by connect(): never interpolates arbitrary text.
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to SCHEMA_VERSION in one transaction; refuse a newer schema."""
    # Checked first without a write lock, so opening an up-to-date store (a CLI ``status`` beside
    # a busy ``serve``) never waits for the writer.
    if _user_version(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _user_version(conn)  # again under the lock: another process may have migrated
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(version, SCHEMA_VERSION)
        for step in MIGRATIONS[version:]:
            for statement in step:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])
