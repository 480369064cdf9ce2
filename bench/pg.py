"""The machine's PostgreSQL for the benchmarks: its URL, a schema per run (dropped after), its processes."""

from __future__ import annotations

import contextlib
import os
import time
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

PG_SERVER = "127.0.0.1:5432/test"  # the machine's server: trust authentication, as root or postgres


def postgres_url() -> str:
    """The URL of the machine's PostgreSQL database ``test`` (as root, else postgres) that connects."""
    failures = []
    for user in ("root", "postgres"):
        url = f"postgresql://{user}@{PG_SERVER}"
        try:
            with psycopg.connect(url, connect_timeout=3):
                return url
        except psycopg.Error as error:
            failures.append(f"as {user}: {str(error).strip()}")
    raise SystemExit(f"PostgreSQL at {PG_SERVER} is unreachable: {'; '.join(failures)}")


def postgres_schema(stack: contextlib.ExitStack) -> str:
    """A store URL whose tables land in a new schema, dropped (its sessions ended) when ``stack`` closes."""
    base = postgres_url()
    schema = f"mpk_bench_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    stack.callback(_drop_schema, base, schema)
    options = quote(f"-csearch_path={schema}", safe="")
    return f"{base}?application_name={schema}&options={options}"


def _drop_schema(base: str, schema: str) -> None:
    with psycopg.connect(base, autocommit=True) as conn:
        # Sessions of nodes that did not stop in time would hold locks the DROP waits for.
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s"
            " AND pid <> pg_backend_pid()",
            (schema,),
        )
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def postgres_pids(store: str) -> list[int]:
    """PIDs working for ``store``: its sessions and the server's background processes (WAL writer ...)."""
    name = conninfo_to_dict(store).get("application_name", "")
    query = "SELECT pid FROM pg_stat_activity WHERE application_name = %s OR backend_type <> 'client backend'"
    with psycopg.connect(postgres_url()) as conn:
        return [int(row[0]) for row in conn.execute(query, (name,)).fetchall()]


def postgres_version() -> str:
    """The server's ``SHOW server_version``."""
    with psycopg.connect(postgres_url()) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"
