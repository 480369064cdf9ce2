"""``mparticle-klaviyo replay`` end to end: the real CLI process against the strict emulator."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig, RunningEmulator
from tests.e2e.helpers import emulator_state, post_control, run_cli, with_emulator, write_config

EXAMPLES = Path(__file__).resolve().parents[2] / "src" / "mparticle_klaviyo" / "examples"


def batch(user: int, events: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "environment": "production",
        "source_request_id": f"req-{user}",
        "device_info": {"platform": "iOS"},
        "user_identities": {"email": f"user{user}@example.com"},
        "events": events,
        **extra,
    }


def custom(n: int, name: str = "Clicked") -> dict[str, Any]:
    return {
        "event_type": "custom_event",
        "data": {"event_name": name, "source_message_id": f"msg-{n}", "timestamp_unixtime_ms": 1_764_000_000_000 + n},
    }


def write_jsonl(path: Path, batches: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(b) + "\n" for b in batches))
    return path


def test_replay_delivers_every_mapped_event_of_the_examples_and_reports_drops(tmp_path: Path) -> None:
    # Copies: replay keeps its checkpoint beside the first file, never in the source tree.
    examples = [Path(shutil.copy(example, tmp_path)) for example in sorted(EXAMPLES.iterdir())]

    async def scenario(emulator: RunningEmulator) -> None:
        config = write_config(tmp_path, emulator.url, consent_mapping='{"email_marketing": "email"}')
        result = await run_cli("replay", *map(str, examples), "--config", str(config), cwd=tmp_path)
        state = await emulator_state(emulator)
        assert result.code == 1, "the examples hold one undecodable line, which must make the exit code 1"
        assert len(state["events"]) == 17
        assert state["rejected"] == []
        assert "unsupported_platform" in result.stdout
        assert "no_email_or_phone" in result.stdout
        assert "delivered" in result.stdout

    with_emulator(scenario)


def test_replay_of_clean_input_exits_zero_and_a_second_replay_records_nothing_new(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [batch(u, [custom(u * 10 + i) for i in range(3)]) for u in range(5)])

    async def scenario(emulator: RunningEmulator) -> None:
        config = write_config(tmp_path, emulator.url)
        first = await run_cli("replay", str(source), "--config", str(config), cwd=tmp_path)
        second = await run_cli("replay", str(source), "--config", str(config), cwd=tmp_path)
        state = await emulator_state(emulator)
        assert (first.code, second.code) == (0, 0), first.stdout + first.stderr
        assert len(state["events"]) == 15
        assert state["duplicates_dropped"] == 15

    with_emulator(scenario)


def test_replay_reads_gzipped_json_lines(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(gzip.compress(b"".join(json.dumps(batch(u, [custom(u)])).encode() + b"\n" for u in range(4))))

    async def scenario(emulator: RunningEmulator) -> None:
        config = write_config(tmp_path, emulator.url)
        result = await run_cli("replay", str(source), "--config", str(config), cwd=tmp_path)
        assert result.code == 0, result.stdout + result.stderr
        assert len((await emulator_state(emulator))["events"]) == 4

    with_emulator(scenario)


def test_replay_waits_out_429s_and_loses_nothing(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [batch(u, [custom(u * 10 + i) for i in range(5)]) for u in range(6)])
    # 30 events against 5/s and 100/min: most of them meet a 429 first.
    config = EmulatorConfig(rate_limits={"POST /client/events": (5, 100)})

    async def scenario(emulator: RunningEmulator) -> None:
        path = write_config(tmp_path, emulator.url)
        result = await run_cli("replay", str(source), "--config", str(path), cwd=tmp_path)
        state = await emulator_state(emulator)
        assert result.code == 0, result.stdout + result.stderr
        assert len(state["events"]) == 30
        assert state["throttled"] > 0, "the scenario must actually meet 429s"
        assert state["duplicates_dropped"] == 0

    with_emulator(scenario, config)


def test_replay_that_stays_under_the_configured_limit_meets_no_429(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [batch(u, [custom(u * 10 + i) for i in range(4)]) for u in range(5)])
    config = EmulatorConfig(rate_limits={"POST /client/events": (8, 200)})

    async def scenario(emulator: RunningEmulator) -> None:
        path = write_config(tmp_path, emulator.url, rate_limits={"POST /client/events": [8, 200]})
        result = await run_cli("replay", str(source), "--config", str(path), cwd=tmp_path)
        state = await emulator_state(emulator)
        assert result.code == 0, result.stdout + result.stderr
        assert len(state["events"]) == 20
        assert state["throttled"] == 0

    with_emulator(scenario, config)


def test_replay_retries_server_errors_and_resets(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [batch(u, [custom(u)]) for u in range(8)])

    async def scenario(emulator: RunningEmulator) -> None:
        await post_control(emulator, "/_emulator/faults", {"status": 503, "count": 3})
        await post_control(emulator, "/_emulator/faults", {"reset": True, "count": 2})
        path = write_config(tmp_path, emulator.url)
        result = await run_cli("replay", str(source), "--config", str(path), cwd=tmp_path)
        state = await emulator_state(emulator)
        assert result.code == 0, result.stdout + result.stderr
        assert len(state["events"]) == 8
        assert state["faults_injected"] == 5

    with_emulator(scenario)


def test_replay_fails_with_klaviyos_reason_when_the_key_is_unknown(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [batch(1, [custom(1)])])

    async def scenario(emulator: RunningEmulator) -> None:
        path = write_config(tmp_path, emulator.url, public_api_key="NOPE99")
        result = await run_cli("replay", str(source), "--config", str(path), cwd=tmp_path)
        assert result.code == 1
        assert "failed: http_400" in result.stdout
        assert "NOPE99" not in result.stdout + result.stderr
        assert (await emulator_state(emulator))["events"] == []

    with_emulator(scenario)


def test_replay_in_server_mode_packs_batches_into_one_bulk_job(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [batch(u, [custom(u * 10 + i) for i in range(3)]) for u in range(4)])

    async def scenario(emulator: RunningEmulator) -> None:
        path = write_config(tmp_path, emulator.url, private_api_key="pk_demo_private_key")
        result = await run_cli("replay", str(source), "--config", str(path), cwd=tmp_path)
        state = await emulator_state(emulator)
        assert result.code == 0, result.stdout + result.stderr
        assert len(state["events"]) == 12
        assert {e["endpoint"] for e in state["events"]} == {"POST /api/event-bulk-create-jobs"}
        assert state["requests"] == 1
        assert "pk_demo_private_key" not in result.stdout + result.stderr

    with_emulator(scenario)


def test_replay_with_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [batch(1, [custom(1)])])

    async def scenario(emulator: RunningEmulator) -> None:
        path = write_config(tmp_path, emulator.url, phone_identifier="Fax")
        result = await run_cli("replay", str(source), "--config", str(path), cwd=tmp_path)
        assert result.code == 2
        assert "connections.e2e.phone_identifier" in result.stderr

    with_emulator(scenario)


SERVER_MODE = {"private_api_key": "pk_demo_private_key"}


def test_a_redelivered_event_with_a_changed_profile_does_not_sink_its_bulk_job(tmp_path: Path) -> None:
    # mParticle re-delivered msg-1 after the user's name changed; user 2's event shares the job.
    first = batch(1, [custom(1)], user_attributes={"$FirstName": "Ann"})
    again = batch(1, [custom(1)], user_attributes={"$FirstName": "Anna"})
    source = write_jsonl(tmp_path / "in.jsonl", [first, again, batch(2, [custom(2)])])

    async def scenario(emulator: RunningEmulator) -> None:
        path = write_config(tmp_path, emulator.url, **SERVER_MODE)
        result = await run_cli("replay", str(source), "--config", str(path), cwd=tmp_path)
        state = await emulator_state(emulator)
        assert result.code == 0, result.stdout + result.stderr
        assert state["rejected"] == []
        assert sorted((e["profile"]["email"], e["unique_id"]) for e in state["events"]) == [
            ("user1@example.com", "msg-1"),
            ("user2@example.com", "msg-2"),
        ]
        # The store keeps the first copy of a repeated event, as serve does.
        assert state["profiles"]["user1@example.com"]["attributes"]["first_name"] == "Ann"
        assert "duplicate_in_input" in result.stdout

    with_emulator(scenario)


def test_an_entry_klaviyo_rejects_fails_alone_and_the_rest_of_its_job_is_resent(tmp_path: Path) -> None:
    # Our email check lets "example..com" through; Klaviyo (the emulator) refuses it with a 400
    # whose pointer names that profile's entry of the bulk job.
    bad = batch(2, [custom(20), custom(21)], user_identities={"email": "user2@example..com"})
    source = write_jsonl(tmp_path / "in.jsonl", [batch(1, [custom(10)]), bad, batch(3, [custom(30), custom(31)])])

    async def scenario(emulator: RunningEmulator) -> None:
        path = write_config(tmp_path, emulator.url, **SERVER_MODE)
        result = await run_cli("replay", str(source), "--config", str(path), cwd=tmp_path)
        state = await emulator_state(emulator)
        assert result.code == 1, result.stdout + result.stderr
        assert sorted(e["unique_id"] for e in state["events"]) == ["msg-10", "msg-30", "msg-31"]
        [rejected] = state["rejected"]
        assert rejected["pointer"].startswith("/data/attributes/events-bulk-create/data/1/")
        assert state["requests"] == 2, "the job, then its other entries as a new job"
        assert summary_count(result.stdout, "Klaviyo events delivered") == 3
        assert summary_count(result.stdout, "failed: http_400") == 2

    with_emulator(scenario)


def test_a_profile_klaviyo_rejects_fails_alone_in_a_packed_subscription_job(tmp_path: Path) -> None:
    consent = {"consent_state": {"gdpr": {"news": {"consented": True}}}}
    bad = batch(2, [], user_identities={"email": "user2@example..com"}, **consent)
    source = write_jsonl(tmp_path / "in.jsonl", [batch(1, [], **consent), bad, batch(3, [], **consent)])

    async def scenario(emulator: RunningEmulator) -> None:
        path = write_config(tmp_path, emulator.url, consent_mapping={"news": "email"}, **SERVER_MODE)
        result = await run_cli("replay", str(source), "--config", str(path), cwd=tmp_path)
        state = await emulator_state(emulator)
        assert result.code == 1, result.stdout + result.stderr
        assert sorted(s["email"] for s in state["subscriptions"]) == ["user1@example.com", "user3@example.com"]
        assert state["rejected"][0]["pointer"].startswith("/data/attributes/profiles/data/1/")
        assert summary_count(result.stdout, "subscriptions delivered") == 2
        assert summary_count(result.stdout, "failed: http_400") == 1

    with_emulator(scenario)


def test_server_mode_packs_consent_subscriptions_of_many_batches_into_bulk_jobs(tmp_path: Path) -> None:
    consent = {"consent_state": {"gdpr": {"news": {"consented": True}}}}
    source = write_jsonl(tmp_path / "in.jsonl", [batch(u, [custom(u)], **consent) for u in range(2500)])
    # Limits high enough that the old one-job-per-batch behaviour fails on the count, not a timeout.
    limits = {"POST /api/profile-subscription-bulk-create-jobs": (5000, 50000)}

    async def scenario(emulator: RunningEmulator) -> None:
        settings = {"consent_mapping": {"news": "email"}, "rate_limits": {k: list(v) for k, v in limits.items()}}
        path = write_config(tmp_path, emulator.url, **settings, **SERVER_MODE)
        result = await run_cli("replay", str(source), "--config", str(path), cwd=tmp_path)
        state = await emulator_state(emulator)
        assert result.code == 0, result.stdout + result.stderr
        assert len(state["events"]) == 2500
        assert len({s["email"] for s in state["subscriptions"]}) == 2500
        assert len(state["subscriptions"]) == 2500
        # Packed as serve packs them: from the jobs claimed when the endpoint lets a request go,
        # up to 1000 each (at least 3 + 3 requests; one per batch would be 5,000).
        assert 6 <= state["requests"] <= 12

    with_emulator(scenario, EmulatorConfig(rate_limits=limits))


def test_ctrl_c_stops_a_stuck_replay_once_its_requests_are_answered_and_keeps_only_its_checkpoint(
    tmp_path: Path,
) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [batch(u, [custom(u)]) for u in range(20)])
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    store = tmp_path / "in.jsonl.replay-checkpoint" / "jobs.sqlite3"

    async def scenario(emulator: RunningEmulator) -> None:
        await post_control(emulator, "/_emulator/faults", {"delay_ms": 3000})  # the run is stuck in sends
        path = write_config(tmp_path, emulator.url)
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "mparticle_klaviyo", "replay", str(source), "--config", str(path)),
            cwd=tmp_path,
            env={**os.environ, "TMPDIR": str(scratch)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            while not store.exists():
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        process.send_signal(signal.SIGINT)
        stdout, _ = await asyncio.wait_for(process.communicate(), 10)
        state = await emulator_state(emulator)
        assert process.returncode == 130
        # The requests out at the Ctrl-C were answered (3 s later) and settled before the exit.
        assert summary_count(stdout.decode(), "Klaviyo events delivered") == state["events_recorded"] > 0
        assert store.exists() and list(scratch.iterdir()) == []

    with_emulator(scenario)


def test_ctrl_c_prints_the_summary_so_far_and_resume_delivers_the_rest_once(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [batch(u, [custom(u * 10 + i) for i in range(2)]) for u in range(20)])
    checkpoint = tmp_path / "in.jsonl.replay-checkpoint"

    async def scenario(emulator: RunningEmulator) -> None:
        # Two requests at a time, the first ten answered slowly: the Ctrl-C comes early in the run.
        await post_control(emulator, "/_emulator/faults", {"delay_ms": 400, "count": 10})
        path = write_config(tmp_path, emulator.url)
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "mparticle_klaviyo", "replay", str(source), "--config", str(path)),
            "--concurrency",
            "2",
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            while not (await emulator_state(emulator))["events"]:
                await asyncio.sleep(0.05)
        process.send_signal(signal.SIGINT)
        stdout, _ = await asyncio.wait_for(process.communicate(), 20)
        first = (await emulator_state(emulator))["events_recorded"]
        assert process.returncode == 130
        assert "interrupted (Ctrl-C)" in stdout.decode() and "replay --resume" in stdout.decode()
        assert summary_count(stdout.decode(), "Klaviyo events delivered") == first < 40
        assert (checkpoint / "checkpoint.json").exists()
        again = await run_cli("replay", str(source), "--config", str(path), cwd=tmp_path)
        assert again.code == 2 and "add --resume" in again.stderr, "a new run does not start over it"
        resumed = await run_cli("replay", str(source), "--config", str(path), "--resume", cwd=tmp_path)
        state = await emulator_state(emulator)
        assert resumed.code == 0, resumed.stdout + resumed.stderr
        assert sorted(e["unique_id"] for e in state["events"]) == sorted(
            f"msg-{u * 10 + i}" for u in range(20) for i in range(2)
        )
        assert state["duplicates_dropped"] == 0, "nothing Klaviyo accepted was sent twice"
        assert summary_count(resumed.stdout, "Klaviyo events delivered") == 40
        assert not checkpoint.exists()

    with_emulator(scenario)


def test_replay_warns_when_the_connection_paces_at_the_default_tier_limits(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [batch(1, [custom(1)])])

    async def scenario(emulator: RunningEmulator) -> None:
        default = await run_cli(
            "replay", str(source), "--config", str(write_config(tmp_path, emulator.url)), cwd=tmp_path
        )
        limits = {"POST /client/events": [350, 3500]}
        configured = write_config(tmp_path, emulator.url, rate_limits=limits)
        chosen = await run_cli("replay", str(source), "--config", str(configured), cwd=tmp_path)
        assert default.code == chosen.code == 0, default.stderr + chosen.stderr
        assert "sets no rate_limits" in default.stderr and "(XL)" in default.stderr
        assert "rate_limits" not in chosen.stderr

    with_emulator(scenario)


def test_the_progress_bar_shows_the_total_and_an_eta(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [batch(u, [custom(u)]) for u in range(3)])

    async def scenario(emulator: RunningEmulator) -> None:
        config = str(write_config(tmp_path, emulator.url))
        wide = {**os.environ, "COLUMNS": "250"}
        result = await run_cli("replay", str(source), "--config", config, cwd=tmp_path, env=wide)
        assert result.code == 0, result.stderr
        assert " 3/3 jobs settled" in result.stderr and "ETA 0:00:00" in result.stderr

    with_emulator(scenario)


def summary_count(stdout: str, label: str) -> int:
    """The count column of the summary table's row starting with ``label``."""
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if len(cells) > 2 and cells[1].startswith(label):
            return int(cells[2])
    raise AssertionError(f"no {label!r} row in:\n{stdout}")


def test_the_checkpoint_goes_where_checkpoint_says_and_a_complete_run_removes_it(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "in.jsonl", [batch(u, [custom(u)]) for u in range(20)])
    chosen = tmp_path / "elsewhere"

    async def scenario(emulator: RunningEmulator) -> None:
        await post_control(emulator, "/_emulator/faults", {"delay_ms": 300, "count": 5})  # slow enough to look
        path = write_config(tmp_path, emulator.url)
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "mparticle_klaviyo", "replay", str(source), "--config", str(path)),
            *("--checkpoint", str(chosen)),
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(30):
            while not (chosen / "jobs.sqlite3").exists():
                await asyncio.sleep(0.05)
        assert not (tmp_path / "in.jsonl.replay-checkpoint").exists()
        stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, stdout.decode() + stderr.decode()
        assert (await emulator_state(emulator))["events_recorded"] == 20
        assert not chosen.exists()

    with_emulator(scenario)
