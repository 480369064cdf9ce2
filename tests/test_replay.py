"""Replay: what reading counts, and delivery through serve's engine on a temporary job store."""

from __future__ import annotations

import asyncio
import io
import json
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from mparticle_klaviyo import replay as replay_module
from mparticle_klaviyo.config import Connection, ConnectionSettings
from mparticle_klaviyo.delivery.backoff import Backoff
from mparticle_klaviyo.jobs.inputs import read_inputs
from mparticle_klaviyo.jobs.plan import EVENT, SUBSCRIPTION, Planned
from mparticle_klaviyo.klaviyo.emulator import RunningEmulator
from mparticle_klaviyo.replay import (
    ACCOUNT_MISMATCH,
    DUPLICATE_IN_INPUT,
    ReplayOptions,
    ReplayStats,
    dispatch_options,
    plan_item,
    replay,
)
from mparticle_klaviyo.replay_checkpoint import Checkpoint, location
from mparticle_klaviyo.report_view import progress_fields, summary_table
from mparticle_klaviyo.store.base import EnqueueResult, NewJob
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.e2e.helpers import emulator_state, post_control, with_emulator
from tests.service.e2e_helpers import FAST_LIMITS, RecordingEmulator, start_recording_emulator

NOW_MS = 1_764_000_000_000
SERVER: dict[str, Any] = {"private_api_key": "pk_demo_private_key"}
CONSENT: dict[str, Any] = {"consent_mapping": {"news": "email"}}
BULK_POINTER = "/data/attributes/events-bulk-create/data/"
FAST: dict[str, Any] = {"rate_limits": {endpoint: list(limits) for endpoint, limits in FAST_LIMITS.items()}}


def connection(url: str = "http://127.0.0.1:1", **settings: Any) -> Connection:
    table = {"public_api_key": "DEMO01", "list_id": "LIST01", "klaviyo_url": url, **settings}
    return Connection("test", ConnectionSettings.model_validate(table), table)


def batch(user: int, events: int = 1, consent: bool = False, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "environment": "production",
        "source_request_id": f"r{user}",
        "device_info": {"platform": "iOS"},
        "user_identities": {"email": f"u{user}@example.com"},
        "events": [
            {
                "event_type": "custom_event",
                "data": {"event_name": "E", "source_message_id": f"m{user}-{n}", "timestamp_unixtime_ms": NOW_MS + n},
            }
            for n in range(events)
        ],
    }
    if consent:
        doc["consent_state"] = {"gdpr": {"news": {"consented": True, "timestamp_unixtime_ms": NOW_MS}}}
    return {**doc, **extra}


def write(tmp_path: Path, docs: list[Any]) -> Path:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return source


def plan(tmp_path: Path, docs: list[Any], conn: Connection | None = None) -> tuple[Planned, ReplayStats]:
    stats, planned = ReplayStats(), Planned()
    for item in read_inputs([write(tmp_path, docs)]):
        plan_item(item, conn or connection(**CONSENT), stats, planned)
    return planned, stats


def deliver(
    tmp_path: Path,
    docs: list[Any],
    *,
    faults: tuple[dict[str, Any], ...] = (),
    options: ReplayOptions | None = None,
    **settings: Any,
) -> tuple[ReplayStats, dict[str, Any]]:
    """Replay ``docs`` into a fresh emulator (with ``faults``); the stats and what it recorded."""
    source = write(tmp_path, docs)

    async def scenario(running: RunningEmulator) -> tuple[ReplayStats, dict[str, Any]]:
        for fault in faults:
            await post_control(running, "/_emulator/faults", fault)
        stats = ReplayStats()
        await replay([source], connection(running.url, **settings), options or ReplayOptions(), stats)
        return stats, await emulator_state(running)

    return with_emulator(scenario)


def test_reading_makes_one_job_per_event_and_one_per_granted_consent(tmp_path: Path) -> None:
    planned, stats = plan(tmp_path, [batch(1, events=3, consent=True), batch(2, events=2, consent=True)])
    kinds = [job.kind for job in planned.jobs]
    assert (kinds.count(EVENT), kinds.count(SUBSCRIPTION)) == (5, 2)
    assert (stats.batches, stats.events_in) == (2, 5)


def test_input_errors_are_recorded_with_their_location_and_pointer(tmp_path: Path) -> None:
    _, stats = plan(tmp_path, [batch(1), {"events": [{"event_type": 5}]}])
    [(location, error)] = stats.input_errors
    assert location.endswith("in.jsonl:2")
    assert error.pointer == "/events/0/event_type"


def test_drops_and_warnings_are_counted_by_reason(tmp_path: Path) -> None:
    bad_phone = batch(3, user_identities={"email": "u3@example.com", "mobile_number": "12"})
    planned, _ = plan(tmp_path, [batch(1, device_info={"platform": "Desktop"}), bad_phone])
    assert planned.dropped["unsupported_platform"] == 1
    assert planned.warnings["invalid_phone"] == 1


def test_a_firehose_request_for_another_account_is_not_queued_and_counted_per_event(tmp_path: Path) -> None:
    firehose = {
        "type": "event_processing_request",
        "account": {"account_settings": {"publicApiKey": "OTHER1"}},
        "user_identities": [{"type": "email", "value": "f@example.com"}],
        "events": [{"type": "session_start", "id": "a", "timestamp_ms": NOW_MS}],
    }
    planned, stats = plan(tmp_path, [firehose])
    assert planned.jobs == []
    assert stats.dropped[ACCOUNT_MISMATCH] == 1
    assert stats.input_errors == []


def test_an_invalid_firehose_setting_is_an_input_error_naming_the_setting(tmp_path: Path) -> None:
    firehose = {"type": "event_processing_request", "account": {"account_settings": {"phoneIdentifier": "Fax"}}}
    _, stats = plan(tmp_path, [{**firehose, "events": []}])
    [(_, error)] = stats.input_errors
    assert error.pointer == "/account/account_settings/phoneIdentifier"


def test_replays_knobs_become_the_engines_and_the_store_is_its_own() -> None:
    options = dispatch_options(ReplayOptions(max_concurrency=7, max_attempts=3, max_retry_age_s=60.0))
    assert (options.max_concurrency, options.max_attempts, options.max_age_s) == (7, 3, 60.0)
    assert options.sole_owner
    assert options.poll_s <= 0.1


def test_server_mode_packs_events_and_consents_of_many_batches_into_bulk_jobs(tmp_path: Path) -> None:
    docs = [batch(u, events=2, consent=True) for u in range(5)]
    stats, state = deliver(tmp_path, docs, **SERVER, **CONSENT)
    assert (stats.events_delivered, stats.subscriptions_delivered, stats.failed) == (10, 5, {})
    assert (stats.queued_events, stats.queued_consents, stats.settled) == (10, 5, 15)
    assert state["requests"] == 2, "one bulk event job and one bulk subscription job"
    assert stats.requests == 2


def test_an_event_repeated_in_the_input_is_queued_once_and_counted_as_a_drop(tmp_path: Path) -> None:
    docs = [batch(1), batch(1, user_attributes={"$FirstName": "Anna"}), batch(2)]
    stats, state = deliver(tmp_path, docs, **SERVER)
    assert stats.dropped == {DUPLICATE_IN_INPUT: 1}
    assert sorted(e["unique_id"] for e in state["events"]) == ["m1-0", "m2-0"]
    assert state["rejected"] == []


def test_a_profile_is_subscribed_once_however_many_batches_carry_the_same_consent(tmp_path: Path) -> None:
    stats, state = deliver(tmp_path, [batch(1, events=0, consent=True) for _ in range(3)], **CONSENT)
    assert stats.subscriptions_delivered == 1
    assert len(state["subscriptions"]) == 1
    assert DUPLICATE_IN_INPUT not in stats.dropped, "a repeated consent is the same state, not a drop"


def bad_email_docs() -> list[dict[str, Any]]:
    # Our email check lets "example..com" through; Klaviyo (the emulator) refuses it with a 400.
    return [batch(1), batch(2, user_identities={"email": "u2@example..com"}), batch(3, events=2)]


def test_in_server_mode_a_400_naming_one_entry_of_a_packed_job_fails_only_that_event(tmp_path: Path) -> None:
    stats, state = deliver(tmp_path, bad_email_docs(), **SERVER)
    assert stats.failed == {"http_400": 1}
    assert BULK_POINTER + "1/" in stats.failure_details["http_400"]
    assert sorted(e["unique_id"] for e in state["events"]) == ["m1-0", "m3-0", "m3-1"]
    assert stats.events_delivered == 3
    assert state["requests"] == 2, "the packed job, then its other entries again"


def test_in_client_mode_a_400_fails_only_the_refused_event(tmp_path: Path) -> None:
    stats, state = deliver(tmp_path, bad_email_docs())
    assert stats.failed == {"http_400": 1}
    assert sorted(e["unique_id"] for e in state["events"]) == ["m1-0", "m3-0", "m3-1"]
    assert state["requests"] == 4, "one request per event"


def test_two_503s_then_a_success_are_retried_with_the_engines_backoff(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[int] = []
    delay = Backoff.delay

    def recorded(self: Backoff, attempt: int) -> float:
        attempts.append(attempt)
        return delay(self, attempt)

    monkeypatch.setattr(Backoff, "delay", recorded)
    stats, state = deliver(tmp_path, [batch(1)], faults=({"status": 503, "count": 2},))
    assert attempts == [0, 1], "the job's own attempt count chose each delay"
    assert (stats.events_delivered, stats.failed, stats.retried_jobs) == (1, {}, 2)
    assert state["faults_injected"] == 2


def test_a_job_that_keeps_failing_is_reported_from_the_dead_letters(tmp_path: Path) -> None:
    options = ReplayOptions(max_attempts=2)
    stats, _ = deliver(tmp_path, [batch(1)], faults=({"status": 503},), options=options)
    assert stats.failed == {"retries_exhausted:http_503": 1}
    assert "HTTP 503" in stats.failure_details["retries_exhausted:http_503"]
    assert stats.events_delivered == 0


def test_a_refused_key_stops_the_replay_and_counts_what_was_not_delivered(tmp_path: Path) -> None:
    stats, state = deliver(tmp_path, [batch(u) for u in range(3)], private_api_key="pk_not_a_known_key")
    assert stats.failed == {"credentials_refused:http_401": 3}
    assert stats.stopped is not None
    assert state["events"] == []


def temp_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Where replay's temporary directory goes during the test."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_the_temporary_store_lives_during_the_run_and_is_deleted_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = temp_root(monkeypatch, tmp_path)
    seen: list[list[str]] = []
    source = write(tmp_path, [batch(u) for u in range(3)])

    async def scenario(running: RunningEmulator) -> None:
        def look() -> None:
            seen.append([p.name for p in root.glob("mparticle-klaviyo-replay-*/*")])

        await replay([source], connection(running.url), ReplayOptions(), ReplayStats(), on_progress=look)

    with_emulator(scenario)
    assert seen and all("jobs.sqlite3" in names for names in seen)
    assert list(root.iterdir()) == []


def test_the_temporary_store_is_deleted_after_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = temp_root(monkeypatch, tmp_path)

    def broken(*_: Any, **__: Any) -> Planned:
        raise RuntimeError("planning broke")

    monkeypatch.setattr(replay_module, "plan_jobs", broken)
    with pytest.raises(RuntimeError, match="planning broke"):
        deliver(tmp_path, [batch(1)])
    assert list(root.iterdir()) == []


def test_a_cancelled_replay_settles_what_is_out_sends_nothing_new_and_leaves_no_temporary_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # asyncio.run turns Ctrl-C into this cancellation of the main task.
    root = temp_root(monkeypatch, tmp_path)
    source = write(tmp_path, [batch(u) for u in range(20)])

    async def scenario() -> tuple[ReplayStats, RecordingEmulator, float]:
        emulator = await start_recording_emulator()
        emulator.add_fault({"delay_ms": 1000})
        stats = ReplayStats()
        options = ReplayOptions(max_concurrency=4)
        task = asyncio.create_task(replay([source], connection(emulator.url, **FAST), options, stats))
        await until(lambda: any(root.iterdir()))
        await asyncio.sleep(0.3)  # requests are out and waiting for their answers
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await emulator.close()
        return stats, emulator, cancelled_at

    stats, emulator, cancelled_at = asyncio.run(scenario())
    answered = [a for a in emulator.arrivals if a.status == 202]
    assert 0 < len(answered) < 20
    assert [a for a in emulator.arrivals if a.at > cancelled_at] == [], "nothing was sent after the Ctrl-C"
    assert stats.events_delivered == len(emulator.unique_ids()) == len(answered), "what Klaviyo took is settled"
    assert stats.interrupted
    assert list(root.iterdir()) == []


def checkpointed_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[ReplayStats, ReplayStats, RecordingEmulator, Checkpoint]:
    """A replay of 30 batches (60 events) cancelled midway, then resumed from its checkpoint."""
    # Small chunks, and reading that waits for delivery: the cancel comes with input unread.
    monkeypatch.setattr(replay_module, "_CHUNK_JOBS", 10)
    monkeypatch.setattr(replay_module, "_AHEAD_JOBS", 20)
    source = write(tmp_path, [batch(u, events=2) for u in range(30)])
    checkpoint = Checkpoint(location([source]))

    async def scenario() -> tuple[ReplayStats, ReplayStats, RecordingEmulator]:
        emulator = await start_recording_emulator()
        emulator.add_fault({"delay_ms": 300, "count": 12})
        conn, first = connection(emulator.url, **FAST), ReplayStats()
        task = asyncio.create_task(
            replay([source], conn, ReplayOptions(max_concurrency=4), first, checkpoint=checkpoint)
        )
        await until(lambda: len(emulator.unique_ids()) >= 4)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert checkpoint.exists()
        second = ReplayStats()
        await replay([source], conn, ReplayOptions(), second, checkpoint=checkpoint, resume=True)
        await emulator.close()
        return first, second, emulator

    first, second, emulator = asyncio.run(scenario())
    return first, second, emulator, checkpoint


def test_a_resumed_replay_delivers_the_rest_and_nothing_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second, emulator, checkpoint = checkpointed_run(tmp_path, monkeypatch)
    every = sorted(f"m{user}-{n}" for user in range(30) for n in range(2))
    assert first.events_delivered < 60 and not first.input_done, "interrupted with input left to read"
    assert sorted(emulator.unique_ids()) == every, "every event delivered, each once"
    assert emulator.state()["duplicates_dropped"] == 0, "nothing Klaviyo accepted was sent again"
    assert (second.batches, second.events_in) == (30, 60)
    assert second.queued_events == 60, "each job counted once, a commit the Ctrl-C interrupted too"
    assert (second.events_delivered, second.failed_total) == (60, 0)
    assert second.dropped == {}
    assert not checkpoint.directory.exists(), "a complete run deletes its checkpoint"


class _HeldSecondCommit(SqliteJobStore):
    """A job store whose second commit of planned jobs waits for the test (a Ctrl-C lands meanwhile)."""

    entered = threading.Event()
    let_go = threading.Event()
    commits = 0

    def enqueue_many(self, calls: Sequence[Sequence[NewJob]], now: float) -> list[EnqueueResult]:
        type(self).commits += 1
        if type(self).commits == 2:
            type(self).entered.set()
            type(self).let_go.wait(10.0)
        return super().enqueue_many(calls, now)


def test_a_ctrl_c_during_a_commit_leaves_a_resume_whose_summary_counts_every_job_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 10 batches of 2 events, committed 5 batches at a time; the Ctrl-C lands in the second commit.
    monkeypatch.setattr(replay_module, "_CHUNK_JOBS", 10)
    monkeypatch.setattr(_HeldSecondCommit, "entered", threading.Event())
    monkeypatch.setattr(_HeldSecondCommit, "let_go", threading.Event())
    monkeypatch.setattr(_HeldSecondCommit, "commits", 0)
    monkeypatch.setattr(replay_module, "SqliteJobStore", _HeldSecondCommit)
    source = write(tmp_path, [batch(u, events=2) for u in range(10)])
    checkpoint = Checkpoint(location([source]))

    async def scenario() -> tuple[ReplayStats, ReplayStats, RecordingEmulator]:
        emulator = await start_recording_emulator()
        conn, first = connection(emulator.url, **FAST), ReplayStats()
        task = asyncio.create_task(replay([source], conn, ReplayOptions(), first, checkpoint=checkpoint))
        await until(_HeldSecondCommit.entered.is_set)
        task.cancel()
        _HeldSecondCommit.let_go.set()  # the commit goes on: the store's enqueue is shielded
        with pytest.raises(asyncio.CancelledError):
            await task
        second = ReplayStats()
        await replay([source], conn, ReplayOptions(), second, checkpoint=checkpoint, resume=True)
        await emulator.close()
        return first, second, emulator

    first, second, emulator = asyncio.run(scenario())
    assert first.queued_events == 20, "the commit the Ctrl-C interrupted is counted"
    assert (second.batches, second.queued_events, second.events_delivered) == (10, 20, 20)
    assert second.dropped == {}, "the resume does not read the committed batches again as duplicates"
    assert len(emulator.unique_ids()) == 20


def test_the_summary_of_an_interrupted_replay_covers_what_its_checkpoint_covers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, *_ = checkpointed_run(tmp_path, monkeypatch)
    assert first.interrupted and first.checkpoint is not None
    assert first.queued_events == 2 * first.batches, "batches read but not queued are left to the resume"
    assert first.settled <= first.queued_total


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    """Wait until ``condition()`` holds; fail after ``timeout_s``."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def test_the_summary_shows_each_fate_by_reason_with_its_detail() -> None:
    stats = ReplayStats()
    stats.events_in, stats.queued_events, stats.events_delivered = 3, 2, 1
    stats.dropped[DUPLICATE_IN_INPUT] = 1
    stats.failed["retries_exhausted:http_503"] = 1
    stats.failure_details["retries_exhausted:http_503"] = "http_503 Service Unavailable"
    stats.stopped = "Klaviyo refused the credentials"
    output = io.StringIO()
    Console(file=output, width=200).print(summary_table(stats))
    text = output.getvalue()
    for expected in (
        "dropped: duplicate_in_input",
        "already queued in this replay",
        "failed: retries_exhausted:http_503",
        "http_503 Service Unavailable",
        "stopped early",
        "2 events, 0 consent changes",
    ):
        assert expected in text


def test_the_progress_shows_the_total_and_an_eta_once_the_input_is_read() -> None:
    stats = ReplayStats()
    stats.queued_events, stats.settled, stats.input_done = 100, 40, True
    fields = progress_fields(stats, elapsed_s=20.0)
    assert (fields["settled"], fields["expected"], fields["eta"]) == ("40", "100", "0:00:30")


def test_while_reading_the_total_is_estimated_from_the_share_of_lines_read() -> None:
    stats = ReplayStats()
    stats.file_lines, stats.reading_at = [300, 100], (1, 0)  # the first file read: 3/4 of the lines
    stats.queued_events, stats.settled = 150, 50
    assert progress_fields(stats, elapsed_s=10.0)["expected"] == "~200"
    assert progress_fields(stats, elapsed_s=10.0)["eta"] == "0:00:30"


def test_without_counts_the_total_and_the_eta_are_unknown() -> None:
    stats = ReplayStats()
    stats.queued_events = 10
    assert (progress_fields(stats, 5.0)["expected"], progress_fields(stats, 5.0)["eta"]) == ("?", "?")


def test_the_eta_of_a_resumed_replay_uses_this_runs_rate_only() -> None:
    stats = ReplayStats()
    stats.queued_events, stats.input_done, stats.settled, stats.settled_before = 100, True, 60, 50
    assert progress_fields(stats, elapsed_s=10.0)["eta"] == "0:00:40"  # 10 settled in 10 s, 40 left


def test_the_summary_of_an_interrupted_replay_says_how_to_resume() -> None:
    stats = ReplayStats()
    stats.queued_events, stats.settled, stats.interrupted, stats.checkpoint = (
        10,
        4,
        True,
        "/data/in.jsonl.replay-checkpoint",
    )
    output = io.StringIO()
    Console(file=output, width=250).print(summary_table(stats))
    assert "interrupted (Ctrl-C)" in output.getvalue()
    assert "6 job(s) not settled; checkpoint /data/in.jsonl.replay-checkpoint" in output.getvalue()
    assert "replay --resume" in output.getvalue()
