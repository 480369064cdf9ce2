"""The service commands as real processes: serve, status, dlq list|show|redrive|purge, replay --enqueue."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mparticle_klaviyo.jobs.plan import plan_jobs, unique_id_of
from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig
from mparticle_klaviyo.mparticle.decode import decode_document
from mparticle_klaviyo.store.base import DeadFilter, Job, JobState, NewJob
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.service.e2e_helpers import (
    FAST_LIMITS,
    ServeProcess,
    connection,
    custom_event,
    free_port,
    post_bulk,
    recording_emulator,
    run_async,
    run_cli,
    serving,
    start_recording_emulator,
    user_batch,
    wait_until,
    write_service_config,
)

NOWHERE = "http://127.0.0.1:9"


def cli(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    """Run one CLI command to completion (no emulator needed)."""
    result: list[tuple[int, str, str]] = []

    async def go() -> None:
        result.append(await run_cli(*args, cwd=tmp_path))

    run_async(go())
    return result[0]


def seed_store(tmp_path: Path) -> dict[str, int]:
    """A store with ready and dead jobs of two connections; the dead jobs' ids by key."""
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    now_ms = time.time() * 1000
    keys = {"acme": ["a1", "a2", "a3", "a4"], "beta": ["b1", "b2"]}
    for name, events in keys.items():
        batches = [user_batch(f"{name}-{key}", [custom_event(key)]) for key in events]
        store.enqueue(
            plan_jobs(decode_document(json.dumps(batches).encode()), connection(NOWHERE, name=name), now_ms).jobs,
            time.time(),
        )
    ids = {unique_id_of(job.key): job.id for name in keys for job in store.claim(name, 10, 60.0, time.time())}
    store.bury([ids["a1"], ids["b1"]], "http_400", "invalid: Invalid company_id '***'.", time.time())
    store.bury(
        [ids["a2"], ids["b2"]],
        "retries_exhausted:http_503",
        "http_503 Injected fault: HTTP 503.",
        time.time(),
        failed=True,
    )
    store.release([ids["a3"], ids["a4"]])
    store.close()
    return ids


def listed_ids(table: str) -> set[int]:
    """The ids in the first column of a printed table."""
    cells = [line.strip("│ ").split("│")[0].strip() for line in table.splitlines() if line.startswith("│")]
    return {int(cell) for cell in cells if cell.isdigit()}


def dead_rows(tmp_path: Path) -> list[Job]:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    try:
        return store.dead(DeadFilter(), 100)
    finally:
        store.close()


def dead_keys(tmp_path: Path) -> list[str]:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    try:
        return sorted(unique_id_of(job.key) for job in store.dead(DeadFilter(), 100))
    finally:
        store.close()


def config_file(tmp_path: Path) -> str:
    return str(write_service_config(tmp_path, NOWHERE, free_port()))


# ----------------------------------------------------------------------------- status


def test_status_shows_the_backlog_per_connection_and_state(tmp_path: Path) -> None:
    seed_store(tmp_path)
    code, out, err = cli(tmp_path, "status", "--config", config_file(tmp_path), "--sample", "0")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines() if "acme" in line or "beta" in line]
    cells = [[cell for cell in row if cell not in "│┃|"] for row in rows]
    assert ["acme", "ready", "2"] in [row[:3] for row in cells]
    assert ["acme", "dead", "2"] in [row[:3] for row in cells]
    assert ["beta", "dead", "2"] in [row[:3] for row in cells]


def test_status_without_a_store_exits_2_saying_so(tmp_path: Path) -> None:
    code, _, err = cli(tmp_path, "status", "--config", config_file(tmp_path), "--sample", "0")
    assert code == 2
    assert "no job store" in err


def test_status_says_when_the_service_is_not_there_to_give_rates(tmp_path: Path) -> None:
    seed_store(tmp_path)
    code, out, err = cli(tmp_path, "status", "--config", config_file(tmp_path), "--sample", "0.1")
    assert code == 0, err
    assert "rates: the service is not reachable" in out


def test_status_shows_rates_read_from_the_running_service(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with recording_emulator() as emulator, serving(tmp_path, emulator.url) as service:
            config = service.config
            code, out, err = await run_cli("status", "--config", str(config), "--sample", "0.2", cwd=tmp_path)
            assert service.process is not None and service.process.returncode is None
        assert code == 0, err
        assert "Rates over 0.2s" in out

    run_async(scenario(), timeout_s=60)


def test_status_json_gives_the_backlog_and_the_dead_letters_by_reason(tmp_path: Path) -> None:
    seed_store(tmp_path)
    code, out, err = cli(tmp_path, "status", "--config", config_file(tmp_path), "--sample", "0", "--json")
    assert code == 0, err
    status = json.loads(out)
    backlog = {(row["connection"], row["state"]): row["jobs"] for row in status["backlog"]}
    assert backlog == {("acme", "ready"): 2, ("acme", "dead"): 2, ("beta", "dead"): 2}
    assert status["dead_letters"] == [
        {"connection": "acme", "reason": "http_400", "jobs": 1},
        {"connection": "acme", "reason": "retries_exhausted:http_503", "jobs": 1},
        {"connection": "beta", "reason": "http_400", "jobs": 1},
        {"connection": "beta", "reason": "retries_exhausted:http_503", "jobs": 1},
    ]
    assert status["service"]["reachable"] is False
    assert [(c["name"], c["credentials"]["state"]) for c in status["connections"]] == [("acme", "unknown")]


def test_status_shows_the_dead_letters_by_reason(tmp_path: Path) -> None:
    seed_store(tmp_path)
    code, out, err = cli(tmp_path, "status", "--config", config_file(tmp_path), "--sample", "0")
    assert code == 0, err
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.split("Dead letters")[1].splitlines()]
    assert ["beta", "retries_exhausted:http_503", "1"] in rows


def test_status_json_reads_totals_gates_and_credentials_from_the_running_service(tmp_path: Path) -> None:
    status: dict[str, Any] = {}

    async def scenario() -> None:
        async with recording_emulator() as emulator, serving(tmp_path, emulator.url) as service:
            config = service.config
            async with aiohttp.ClientSession() as session:
                batches = [user_batch(f"u{n}", [custom_event(f"m{n}")]) for n in range(3)]
                assert await post_bulk(session, service.url, batches) == 202
            await wait_until(lambda: _true(len(emulator.unique_ids()) == 3), 10.0, "delivery")
            code, out, err = await run_cli("status", "--config", str(config), "--sample", "0.2", "--json", cwd=tmp_path)
        assert code == 0, err
        status.update(json.loads(out))

    run_async(scenario(), timeout_s=60)
    assert status["service"]["reachable"] is True and status["service"]["sampled_s"] == 0.2
    [acme] = status["connections"]
    assert (acme["totals"]["events_received"], acme["totals"]["jobs_queued"]) == (3, 3)
    assert (acme["totals"]["jobs_delivered"], acme["totals"]["klaviyo_events_delivered"]) == (3, 3)
    assert acme["rates_per_s"]["jobs_delivered"] == 0.0
    assert acme["credentials"]["state"] == "ok"
    assert {gate["endpoint"] for gate in acme["gates"]} >= {"POST /client/events", "POST /client/subscriptions"}
    assert all(gate["open"] for gate in acme["gates"])


# ----------------------------------------------------------------------------- dlq


def test_dlq_list_shows_dead_jobs_with_their_reason_and_answer(tmp_path: Path) -> None:
    ids = seed_store(tmp_path)
    code, out, err = cli(tmp_path, "dlq", "list", "--config", config_file(tmp_path))
    assert code == 0, err
    for key in ("a1", "a2", "b1", "b2"):
        assert f" {ids[key]} " in out
    assert "http_400" in out and "retries_exhausted" in out
    assert "Invalid company_id" in out


def test_dlq_list_json_gives_each_dead_job_without_its_key_or_input(tmp_path: Path) -> None:
    ids = seed_store(tmp_path)
    code, out, err = cli(tmp_path, "dlq", "list", "--config", config_file(tmp_path), "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert (listed["limit"], listed["more"]) == (50, False)
    assert [job["id"] for job in listed["dead_letters"]] == sorted(ids[key] for key in ("a1", "a2", "b1", "b2"))
    first = listed["dead_letters"][0]
    assert set(first) == {"id", "connection", "kind", "reason", "detail", "attempts", "throttles", "created_at"}
    assert (first["connection"], first["reason"], first["detail"]) == (
        "acme",
        "http_400",
        "invalid: Invalid company_id '***'.",
    )
    assert "example.com" not in out, "no key (it holds the profile) and no input"


def test_dlq_list_json_says_when_there_are_more_than_the_limit(tmp_path: Path) -> None:
    ids = seed_store(tmp_path)
    config = config_file(tmp_path)
    code, out, _ = cli(tmp_path, "dlq", "list", "--config", config, "--json", "--limit", "1", "--connection", "beta")
    assert code == 0
    listed = json.loads(out)
    assert ([job["id"] for job in listed["dead_letters"]], listed["more"]) == ([ids["b1"]], True)
    code, out, _ = cli(tmp_path, "dlq", "list", "--config", config, "--json", "--reason", "nope")
    assert (code, json.loads(out)) == (0, {"dead_letters": [], "limit": 50, "more": False})


def test_dlq_list_filters_by_connection_and_reason(tmp_path: Path) -> None:
    ids = seed_store(tmp_path)
    code, out, err = cli(
        tmp_path, "dlq", "list", "--config", config_file(tmp_path), "--connection", "beta", "--reason", "http_400"
    )
    assert code == 0, err
    shown = {key for key, job_id in ids.items() if f" {job_id} " in out}
    assert shown == {"b1"}
    assert "retries_exhausted" not in out


def test_dlq_show_prints_the_reason_klaviyos_answer_and_the_stored_input(tmp_path: Path) -> None:
    ids = seed_store(tmp_path)
    code, out, err = cli(tmp_path, "dlq", "show", str(ids["a1"]), "--config", config_file(tmp_path))
    assert code == 0, err
    shown: dict[str, Any] = json.loads(out)
    assert shown["id"] == ids["a1"]
    assert (shown["connection"], shown["state"], shown["reason"]) == ("acme", "dead", "http_400")
    assert "Invalid company_id" in shown["detail"]
    assert shown["input"]["events"][0]["source_message_id"] == "a1"
    assert shown["input"]["identities"] == {"email": "acme-a1@example.com"}


def test_dlq_show_of_a_job_that_is_not_dead_exits_1(tmp_path: Path) -> None:
    ids = seed_store(tmp_path)
    code, _, err = cli(tmp_path, "dlq", "show", str(ids["a3"]), "--config", config_file(tmp_path))
    assert code == 1
    assert f"no dead job {ids['a3']}" in err


def test_dlq_show_of_a_dead_job_whose_input_no_longer_decodes_says_so(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    store.enqueue([NewJob(connection="acme", key="k1", profile_key="", kind="event", payload=b"\xc1")], time.time())
    [job] = store.claim("acme", 1, 60.0, time.time())
    store.bury([job.id], "unmappable", "MessagePack data is malformed", time.time())
    store.close()
    code, out, err = cli(tmp_path, "dlq", "show", str(job.id), "--config", config_file(tmp_path))
    assert code == 0, err
    shown: dict[str, Any] = json.loads(out)
    assert shown["reason"] == "unmappable"
    assert "malformed" in shown["input"]["undecodable"]


def test_dlq_redrive_by_reason_makes_only_those_jobs_ready_again(tmp_path: Path) -> None:
    seed_store(tmp_path)
    code, out, err = cli(tmp_path, "dlq", "redrive", "--config", config_file(tmp_path), "--reason", "retries_exhausted")
    assert code == 0, err
    assert "redrove 2 job(s)" in out
    assert dead_keys(tmp_path) == ["a1", "b1"]


def test_dlq_redrive_by_connection_and_id_redrives_only_those(tmp_path: Path) -> None:
    ids = seed_store(tmp_path)
    config = config_file(tmp_path)
    code, out, _ = cli(tmp_path, "dlq", "redrive", "--config", config, "--connection", "beta", "--id", str(ids["b2"]))
    assert (code, out.strip()) == (0, "redrove 1 job(s)")
    assert dead_keys(tmp_path) == ["a1", "a2", "b1"]


def test_a_redriven_job_is_ready_with_its_attempts_reset(tmp_path: Path) -> None:
    ids = seed_store(tmp_path)
    cli(tmp_path, "dlq", "redrive", "--config", config_file(tmp_path), "--id", str(ids["a2"]))
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    claimed = {unique_id_of(job.key): job for job in store.claim("acme", 10, 60.0, time.time())}
    store.close()
    assert set(claimed) == {"a2", "a3", "a4"}
    assert (claimed["a2"].attempts, claimed["a2"].throttles, claimed["a2"].dead_reason) == (0, 0, None)


def test_dlq_list_reason_matches_the_status_part_of_the_reason(tmp_path: Path) -> None:
    ids = seed_store(tmp_path)
    code, out, err = cli(tmp_path, "dlq", "list", "--config", config_file(tmp_path), "--reason", "http_503")
    assert code == 0, err
    assert listed_ids(out) == {ids["a2"], ids["b2"]}


def test_dlq_redrive_dry_run_shows_what_would_be_sent_today_and_changes_nothing(tmp_path: Path) -> None:
    ids = seed_store(tmp_path)
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    store.enqueue([NewJob(connection="acme", key="k1", profile_key="", kind="event", payload=b"\xc1")], time.time())
    [garbage] = store.claim("acme", 10, 60.0, time.time())[-1:]
    store.bury([garbage.id], "unmappable", "MessagePack data is malformed", time.time())
    store.close()
    before = dead_rows(tmp_path)
    code, out, err = cli(tmp_path, "dlq", "redrive", "--config", config_file(tmp_path), "--dry-run")
    assert code == 0, err
    shown = {int(line.split()[0]): line for line in out.splitlines() if line[:1].isdigit()}
    assert set(shown) == {ids["a1"], ids["a2"], ids["b1"], ids["b2"], garbage.id}
    assert shown[ids["a2"]].startswith(f"{ids['a2']} acme retries_exhausted:http_503 -> POST /client/events")
    assert "no such connection" in shown[ids["b2"]], "beta is not in this config"
    assert "unmappable" in shown[garbage.id] and "dead-lettered again" in shown[garbage.id]
    assert "dry run: would redrive 5 job(s); nothing changed" in out
    assert dead_rows(tmp_path) == before


def test_dlq_redrive_is_one_json_log_line_on_stderr(tmp_path: Path) -> None:
    ids = seed_store(tmp_path)
    config = str(write_service_config(tmp_path, NOWHERE, free_port(), service={"log_level": "info"}))
    code, out, err = cli(tmp_path, "dlq", "redrive", "--config", config, "--reason", "http_503")
    assert (code, out.strip()) == (0, "redrove 2 job(s)")
    [line] = [json.loads(text) for text in err.splitlines() if '"redriven"' in text]
    assert (line["logger"], line["jobs"], line["reason"]) == ("mparticle_klaviyo.dlq", 2, "http_503")
    assert sorted(line["job_ids"]) == sorted([ids["a2"], ids["b2"]])


@pytest.mark.parametrize("command", [["list"], ["redrive"], ["redrive", "--dry-run"], ["purge", "--yes"]], ids=" ".join)
def test_a_dlq_command_that_matches_nothing_says_so_and_exits_0(tmp_path: Path, command: list[str]) -> None:
    seed_store(tmp_path)
    config = config_file(tmp_path)
    code, out, err = cli(tmp_path, "dlq", *command, "--config", config, "--connection", "acme", "--reason", "nope")
    assert code == 0, err
    assert "no dead letters match --connection acme --reason nope" in out
    assert dead_keys(tmp_path) == ["a1", "a2", "b1", "b2"]


def test_dlq_purge_without_yes_deletes_nothing_and_exits_2(tmp_path: Path) -> None:
    seed_store(tmp_path)
    code, _, err = cli(tmp_path, "dlq", "purge", "--config", config_file(tmp_path))
    assert code == 2
    assert "--yes" in err
    assert dead_keys(tmp_path) == ["a1", "a2", "b1", "b2"]


def test_dlq_purge_deletes_only_the_matching_dead_jobs(tmp_path: Path) -> None:
    seed_store(tmp_path)
    config = config_file(tmp_path)
    code, out, _ = cli(
        tmp_path, "dlq", "purge", "--config", config, "--connection", "acme", "--reason", "http_400", "--yes"
    )
    assert (code, out.strip()) == (0, "purged 1 job(s)")
    assert dead_keys(tmp_path) == ["a2", "b1", "b2"]
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    assert store.backlog("acme") == 2, "ready jobs are never purged"
    store.close()


# ----------------------------------------------------------------------------- replay --enqueue


def test_replay_enqueue_queues_the_files_events_for_the_service(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(user_batch(f"u{n}", [custom_event(f"m{n}")])) + "\n" for n in range(5)))
    config = config_file(tmp_path)
    code, out, err = cli(tmp_path, "replay", str(source), "--enqueue", "--config", config)
    assert code == 0, err
    assert "queued 5 job(s)" in out
    again = cli(tmp_path, "replay", str(source), "--enqueue", "--config", config)
    assert "queued 0 job(s) (5 already queued before)" in again[1]
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    jobs = store.claim("acme", 10, 60.0, time.time())
    store.close()
    assert sorted(unique_id_of(job.key) for job in jobs) == [f"m{n}" for n in range(5)]


# ----------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    "command", [["serve"], ["status", "--sample", "0"], ["dlq", "list"], ["dlq", "redrive"], ["dlq", "show", "1"]]
)
def test_a_config_error_exits_2_naming_the_problem(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[service]\nport = -1\n\n[connections.acme]\npublic_api_key = "DEMO01"\n')
    code, _, err = cli(tmp_path, *command, "--config", str(path))
    assert code == 2
    assert "service.port" in err


def test_a_missing_config_file_exits_2(tmp_path: Path) -> None:
    code, _, err = cli(tmp_path, "serve", "--config", str(tmp_path / "absent.toml"))
    assert code == 2
    assert "file not found" in err


# ----------------------------------------------------------------------------- serve


def test_serve_stops_on_sigterm_with_exit_code_0_and_releases_its_leases(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            recording_emulator(faults=[{"delay_ms": 2000}]) as emulator,
            serving(tmp_path, emulator.url, service={"lease_s": 60.0, "shutdown_timeout_s": 0.3}) as service,
        ):
            async with aiohttp.ClientSession() as session:
                assert (
                    await post_bulk(
                        session, service.url, [user_batch(f"u{n}", [custom_event(f"m{n}")]) for n in range(3)]
                    )
                    == 202
                )
            await wait_until(lambda: _true(emulator.emulator.state.requests >= 3), 10.0, "sends in flight")
            started = time.monotonic()
            assert await service.terminate() == 0
            assert time.monotonic() - started < 3.0
        store = SqliteJobStore(tmp_path / "jobs.sqlite3")
        counts = {count.state: count.count for count in store.counts()}
        store.close()
        assert counts == {JobState.READY: 3}, "released for the next start, not left to their 60 s lease"

    run_async(scenario(), timeout_s=60)


def test_a_second_serve_on_the_same_store_exits_2_naming_the_first(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with recording_emulator() as emulator, serving(tmp_path, emulator.url) as first:
            (tmp_path / "second").mkdir()
            same_store = {"store": str(tmp_path / "jobs.sqlite3")}
            second_config = write_service_config(tmp_path / "second", emulator.url, free_port(), service=same_store)
            code, _, err = await run_cli("serve", "--config", str(second_config), cwd=tmp_path)
            assert code == 2
            assert "in use by another `serve`" in err and "Traceback" not in err
            assert await first.terminate() == 0

    run_async(scenario(), timeout_s=60)


def test_serve_on_a_port_in_use_exits_2_without_a_traceback(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        port = int(emulator.url.rsplit(":", 1)[1])  # the emulator's own port: taken
        config = write_service_config(tmp_path, emulator.url, port)
        try:
            code, _, err = await run_cli("serve", "--config", str(config), cwd=tmp_path)
        finally:
            await emulator.close()
        assert code == 2
        assert "cannot start serving" in err and "Traceback" not in err

    run_async(scenario(), timeout_s=60)


def test_redrive_after_fixing_the_connection_delivers_the_dead_letters(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator(
            EmulatorConfig(company_ids=frozenset({"DEMO01"}), rate_limits=dict(FAST_LIMITS))
        )
        port = free_port()
        # A typo in the public key: Klaviyo answers 400 "Invalid company_id" and the jobs are dead-lettered.
        config = write_service_config(tmp_path, emulator.url, port, public_api_key="DEMO0l")
        service = ServeProcess(config, port, tmp_path / "serve.log")
        store_path = tmp_path / "jobs.sqlite3"
        try:
            await service.start()
            async with aiohttp.ClientSession() as session:
                assert (
                    await post_bulk(
                        session, service.url, [user_batch(f"u{n}", [custom_event(f"m{n}")]) for n in range(4)]
                    )
                    == 202
                )
            await wait_until(lambda: _true(_dead_count(store_path) == 4), 10.0, "four dead letters")
            code, out, _ = await run_cli("dlq", "list", "--config", str(config), "--reason", "http_400", cwd=tmp_path)
            assert code == 0 and "Invalid company_id" in out
            assert await service.terminate() == 0
            write_service_config(tmp_path, emulator.url, port)  # the fix
            await service.start()
            code, out, _ = await run_cli(
                "dlq", "redrive", "--config", str(config), "--connection", "acme", "--reason", "http_400", cwd=tmp_path
            )
            assert (code, out.strip()) == (0, "redrove 4 job(s)")
            await wait_until(lambda: _true(len(emulator.unique_ids()) == 4), 10.0, "delivery after the redrive")
            assert await service.terminate() == 0
        finally:
            await service.ensure_stopped()
            await emulator.close()
        assert sorted(emulator.unique_ids()) == ["m0", "m1", "m2", "m3"]
        store = SqliteJobStore(store_path)
        assert store.counts() == []
        store.close()

    run_async(scenario(), timeout_s=60)


def _dead_count(path: Path) -> int:
    store = SqliteJobStore(path)
    try:
        return len(store.dead(DeadFilter(), 100))
    finally:
        store.close()


async def _true(value: bool) -> bool:
    await asyncio.sleep(0)
    return value
