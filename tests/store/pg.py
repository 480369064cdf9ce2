"""The machine's PostgreSQL for tests: each test gets a fresh schema of its own, dropped afterwards.

No mock: the store tests run against the real server at 127.0.0.1:5432 (trust authentication,
user root or postgres, database ``test``). When it is unreachable the tests that need it skip,
or fail under ``CI=true`` (``.ci/run`` starts the server when it is down).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

from tests.conftest import skip_or_fail

HOST, PORT, DATABASE = "127.0.0.1", 5432, "test"
USERS = ("root", "postgres")


@functools.cache
def _server() -> tuple[str | None, str]:
    """The first URL that connects (as root, else postgres), or None and why none did."""
    failures = []
    for user in USERS:
        url = f"postgresql://{user}@{HOST}:{PORT}/{DATABASE}"
        try:
            with psycopg.connect(url, connect_timeout=3):
                return url, ""
        except psycopg.Error as error:
            failures.append(f"as {user}: {str(error).strip()}")
    return None, "; ".join(failures)


def server_url() -> str:
    """The server's URL (no schema chosen); skips the test, or fails it under CI, when unreachable."""
    url, why = _server()
    if url is None:
        skip_or_fail(f"PostgreSQL at {HOST}:{PORT}/{DATABASE} is unreachable ({why})")
    return url


def schema_url(base: str, schema: str, **settings: str) -> str:
    """``base`` with ``schema`` first on the search_path, and the connections named after it.

    ``settings`` become ``-c name=value`` session settings (e.g. synchronous_commit="off").
    """
    options = " ".join([f"-csearch_path={schema}", *(f"-c{name}={value}" for name, value in settings.items())])
    return f"{base}?application_name={schema}&options={quote(options, safe='')}"


def admin() -> psycopg.Connection[TupleRow]:
    """A fresh autocommit connection to the test database, outside every test schema."""
    return psycopg.connect(server_url(), autocommit=True)


@contextmanager
def fresh_schema(**settings: str) -> Iterator[str]:
    """A URL whose tables land in a new, empty schema; the schema is dropped afterwards."""
    base = server_url()
    schema = f"mpk_test_{uuid.uuid4().hex[:16]}"
    with admin() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema_url(base, schema, **settings)
    finally:
        drop_schema(schema)


def drop_schema(schema: str) -> None:
    """Drop ``schema`` and everything in it, after ending its leftover connections."""
    with admin() as conn:
        terminate(conn, schema)
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def terminate(conn: psycopg.Connection[TupleRow], application_name: str) -> int:
    """End the server sessions of ``application_name`` (a test schema's connections); how many."""
    query = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
    rows = conn.execute(query + " AND pid <> pg_backend_pid()", (application_name,)).fetchall()
    return len(rows)


def schema_of(url: str) -> str:
    """The test schema a ``schema_url`` names (its application_name)."""
    return url.split("application_name=", 1)[1].split("&", 1)[0]
