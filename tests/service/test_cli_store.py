"""Store commands as real processes: migrate on either kind of store; status, dlq and replay --enqueue on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import closing
from pathlib import Path

import psycopg

from mparticle_klaviyo.jobs.plan import unique_id_of
from mparticle_klaviyo.store import postgres_schema, sqlite_schema
from mparticle_klaviyo.store.postgres import PostgresJobStore
from tests.service.e2e_helpers import custom_event, free_port, run_async, run_cli, user_batch, write_service_config
from tests.service.test_cli_service import NOWHERE, cli
from tests.store.helpers import new_jobs

PASSWORD = "db-pw-never_shown_0123"
# Every migration step applied once, in order.
ALL_VERSIONS = [(version,) for version in range(1, postgres_schema.SCHEMA_VERSION + 1)]


def config_for(tmp_path: Path, store: str) -> str:
    return str(write_service_config(tmp_path, NOWHERE, free_port(), service={"store": store}))


def test_migrate_creates_a_sqlite_store_and_prints_its_schema_version(tmp_path: Path) -> None:
    code, out, err = cli(tmp_path, "migrate", "--config", config_for(tmp_path, str(tmp_path / "jobs.sqlite3")))
    assert code == 0, err
    assert out.strip() == f"job store {tmp_path / 'jobs.sqlite3'}: schema version {sqlite_schema.SCHEMA_VERSION}"
    assert (tmp_path / "jobs.sqlite3").exists()


def test_migrate_creates_the_postgresql_tables_and_prints_the_schema_version(tmp_path: Path, postgres_url: str) -> None:
    config = config_for(tmp_path, postgres_url)
    for _ in range(2):
        code, out, err = cli(tmp_path, "migrate", "--config", config)
        assert code == 0, err
        assert out.strip().endswith(f": schema version {postgres_schema.SCHEMA_VERSION}")
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall() == ALL_VERSIONS


def test_two_migrate_processes_at_once_both_succeed_and_migrate_once(tmp_path: Path, postgres_url: str) -> None:
    config = config_for(tmp_path, postgres_url)
    results: list[tuple[int, str, str]] = []

    async def both() -> None:
        results.extend(await asyncio.gather(*(run_cli("migrate", "--config", config, cwd=tmp_path) for _ in range(2))))

    run_async(both())
    assert [code for code, _, _ in results] == [0, 0], results
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM schema_version ORDER BY 1").fetchall() == ALL_VERSIONS


def test_an_unreachable_database_exits_2_without_showing_its_password(tmp_path: Path) -> None:
    config = config_for(tmp_path, f"postgresql://mpk:{PASSWORD}@127.0.0.1:1/jobs")
    for command in (["migrate"], ["serve"], ["status", "--sample", "0"], ["dlq", "list"]):
        code, out, err = cli(tmp_path, *command, "--config", config)
        assert code == 2, (command, out, err)
        assert "unreachable" in err
        assert PASSWORD not in out + err


def test_status_and_dlq_list_read_a_postgresql_store(tmp_path: Path, postgres_url: str) -> None:
    with closing(PostgresJobStore(postgres_url)) as store:
        store.enqueue(new_jobs("k1", "k2", connection="acme"), time.time())
        [dead] = store.claim("acme", 1, 60.0, time.time())
        store.bury([dead.id], "http_400", "invalid", time.time())
    config = config_for(tmp_path, postgres_url)
    code, out, err = cli(tmp_path, "status", "--config", config, "--sample", "0")
    assert code == 0, err
    cells = [[cell for cell in line.split() if cell not in "│┃|"][:3] for line in out.splitlines() if "acme" in line]
    assert ["acme", "ready", "1"] in cells and ["acme", "dead", "1"] in cells
    code, out, err = cli(tmp_path, "dlq", "list", "--config", config)
    assert code == 0, err
    assert "http_400" in out and str(dead.id) in out


def test_replay_enqueue_queues_into_a_postgresql_store(tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(user_batch(f"u{n}", [custom_event(f"m{n}")])) + "\n" for n in range(3)))
    code, out, err = cli(tmp_path, "replay", str(source), "--enqueue", "--config", config_for(tmp_path, postgres_url))
    assert code == 0, err
    assert "queued 3 job(s)" in out
    with closing(PostgresJobStore(postgres_url)) as store:
        jobs = store.claim("acme", 10, 60.0, time.time())
    assert sorted(unique_id_of(job.key) for job in jobs) == ["m0", "m1", "m2"]
