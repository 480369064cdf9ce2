"""``mparticle-klaviyo replay`` end to end: the real CLI process against the strict emulator."""

from __future__ import annotations

import gzip
import json
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
    async def scenario(emulator: RunningEmulator) -> None:
        config = write_config(tmp_path, emulator.url, consent_mapping='{"email_marketing": "email"}')
        result = await run_cli("replay", *map(str, sorted(EXAMPLES.iterdir())), "--config", str(config), cwd=tmp_path)
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
