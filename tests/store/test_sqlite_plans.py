"""Every statement of SqliteJobStore finds its rows through an index: none scans the jobs table.

This is what keeps claim, counts() and backlog() cheap on a million-job table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest

from mparticle_klaviyo.store import sqlite_sql as sql
from mparticle_klaviyo.store.base import DeadFilter
from mparticle_klaviyo.store.sqlite import SqliteJobStore

FILTERS = {
    "all": DeadFilter(),
    "connection": DeadFilter(connection="a"),
    "reason": DeadFilter(reason="r"),
    "ids": DeadFilter(ids=(1, 2)),
    "connection+reason": DeadFilter(connection="a", reason="r"),
}
CONSTANT = ["CLAIM", "ACK", "RETRY", "BURY", "RELEASE", "RELEASE_EXPIRED", "FAILING", "FORGET", "KNOWN_KEYS"]
CONSTANT += ["REMEMBER_KEYS", "COUNT_INSERTED", "CONNECTIONS", "COUNTS", "BACKLOG_ALL", "BACKLOG_ONE"]
STATEMENTS: dict[str, tuple[str, list[object]]] = {name: (getattr(sql, name), []) for name in CONSTANT}
STATEMENTS["insert_jobs[1]"] = (sql.insert_jobs(1), [])
STATEMENTS[f"insert_jobs[{sql.ROWS_PER_INSERT}]"] = (sql.insert_jobs(sql.ROWS_PER_INSERT), [])
for label, where in FILTERS.items():
    STATEMENTS[f"dead[{label}]"] = sql.select_dead(where, 10, 0)
    STATEMENTS[f"redrive[{label}]"] = sql.redrive_dead(where, 0.0)
    STATEMENTS[f"purge[{label}]"] = sql.purge_dead(where)


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sqlite3.Connection]:
    """A plain connection to a file with the store's schema."""
    path = tmp_path_factory.mktemp("plans") / "jobs.db"
    SqliteJobStore(path).close()
    with closing(sqlite3.connect(path)) as connection:
        yield connection


def plan(conn: sqlite3.Connection, statement: str, params: list[object]) -> list[str]:
    """The steps of SQLite's query plan for ``statement``."""
    # Constant statements get NULL for each parameter (each "?" or "?N" appears once in them).
    values = params or [None] * statement.count("?")
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}", values)]


@pytest.mark.parametrize("name", STATEMENTS)
def test_the_statement_never_scans_a_whole_table(conn: sqlite3.Connection, name: str) -> None:
    statement, params = STATEMENTS[name]
    steps = plan(conn, statement, params)
    assert not [step for step in steps if step in ("SCAN jobs", "SCAN seen")], steps


@pytest.mark.parametrize("name", ["CLAIM", "FAILING", *(f"dead[{label}]" for label in FILTERS)])
def test_the_statement_reads_rows_in_id_order_without_sorting(conn: sqlite3.Connection, name: str) -> None:
    statement, params = STATEMENTS[name]
    assert not [step for step in plan(conn, statement, params) if "TEMP B-TREE" in step]
