"""Open the job store that ``[service] store`` names: a SQLite file or a PostgreSQL database.

Every command that opens the service's store comes here (``serve``, ``status``, ``dlq``,
``migrate``, ``replay --enqueue``), so both kinds are opened, watched and owned one way.
psycopg is imported only when a PostgreSQL store is opened.
"""

from __future__ import annotations

from mparticle_klaviyo.store.base import JobStore
from mparticle_klaviyo.store.location import PostgresLocation, SqliteLocation, StoreLocation, parse_store
from mparticle_klaviyo.store.owner import OwnerLock
from mparticle_klaviyo.store.sqlite import DEFAULT_DEDUP_WINDOW_S, SqliteJobStore
from mparticle_klaviyo.store.watch import StoreWatch


def locate(store: str | StoreLocation) -> StoreLocation:
    """The parsed location of a ``store`` setting (ValueError if it is neither kind)."""
    return parse_store(store) if isinstance(store, str) else store


def open_store(store: str | StoreLocation, *, dedup_window_s: float = DEFAULT_DEDUP_WINDOW_S) -> JobStore:
    """Open (creating or migrating its tables) the store ``store`` names."""
    location = locate(store)
    if isinstance(location, SqliteLocation):
        return SqliteJobStore(location.path, dedup_window_s=dedup_window_s)
    from mparticle_klaviyo.store.postgres import PostgresJobStore

    return PostgresJobStore(location, dedup_window_s=dedup_window_s)


def migrate_store(store: str | StoreLocation) -> int:
    """Apply the store's pending migrations (creating it if need be); its schema version."""
    location = locate(store)
    if isinstance(location, SqliteLocation):
        from mparticle_klaviyo.store.sqlite_schema import SCHEMA_VERSION

        SqliteJobStore(location.path).close()  # opening a SQLite store migrates it
        return SCHEMA_VERSION
    from mparticle_klaviyo.store.postgres import migrate_database

    return migrate_database(location)


def exists(store: str | StoreLocation) -> bool:
    """Whether there is a store to read (a SQLite file; a database is taken to exist, and fails on use if not)."""
    location = locate(store)
    return isinstance(location, PostgresLocation) or location.path.exists()


def watch_store(store: str | StoreLocation, min_free_bytes: int) -> StoreWatch:
    """The health watch of an opened store: files and free disk for SQLite, failed calls for both."""
    location = locate(store)
    if isinstance(location, SqliteLocation):
        return StoreWatch(location.path, min_free_bytes)
    # The database's files and disk are the server's, out of our sight: only failed calls
    # (a lost connection, a server that does not answer) hold ingest.
    return StoreWatch(None, min_free_bytes, label=location.shown)


def store_lanes(store: str | StoreLocation) -> int:
    """How many lanes ``AsyncStore`` runs the store's calls on: SQLite has one writer, PostgreSQL many."""
    return 1 if isinstance(locate(store), SqliteLocation) else 2


def owner_lock(store: str | StoreLocation) -> OwnerLock | None:
    """The lock that makes this process the store's only deliverer, or None where there is none.

    SQLite: ``<store>.lock``, so a second ``serve`` on the file refuses to start. PostgreSQL:
    none; several ``serve`` nodes share the database, and each Klaviyo account is delivered by
    the node holding its lease. Without the lock, ``serve`` is not the sole owner: leases found
    at start are released only once they expire.
    """
    location = locate(store)
    return OwnerLock(location.path) if isinstance(location, SqliteLocation) else None


def describe(store: str | StoreLocation) -> str:
    """How messages name the store: its path, or its URL without the password."""
    return locate(store).shown
