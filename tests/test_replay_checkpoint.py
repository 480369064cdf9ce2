"""replay's checkpoint: made beside the input, resumed only for the same files and connection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mparticle_klaviyo.config import Connection, ConnectionSettings
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.replay_checkpoint import Checkpoint, CheckpointError, Recorder, location
from mparticle_klaviyo.replay_stats import ReplayStats


def connection(name: str = "shop", url: str = "http://127.0.0.1:1") -> Connection:
    table: dict[str, Any] = {"public_api_key": "DEMO01", "klaviyo_url": url}
    return Connection(name, ConnectionSettings.model_validate(table), table)


def inputs(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    for path in paths:
        path.write_text("{}\n")
    return paths


def interrupted(tmp_path: Path) -> tuple[list[Path], Checkpoint]:
    """A run that committed 7 items, then stopped."""
    paths = inputs(tmp_path)
    checkpoint = Checkpoint(location(paths))
    stats = ReplayStats()
    recorder = Recorder.begin(checkpoint, paths, connection(), stats, resume=False)
    checkpoint.store_path.write_bytes(b"")  # the run's job store
    stats.batches, stats.events_in, stats.queued_events = 7, 9, 8
    stats.dropped["no_email_or_phone"] = 1
    stats.input_errors.append(("a.jsonl:3", InputError("/events/0", "bad")))
    recorder.committed(7, stats)
    stats.batches, stats.settled, stats.events_delivered = 9, 5, 6  # 2 batches read after the commit
    recorder.finish(stats, complete=False)
    return paths, checkpoint


def test_the_checkpoint_sits_beside_the_first_input(tmp_path: Path) -> None:
    paths = inputs(tmp_path)
    assert location(paths) == tmp_path / "a.jsonl.replay-checkpoint"


def test_a_resume_starts_from_the_last_commit_with_its_counts(tmp_path: Path) -> None:
    paths, checkpoint = interrupted(tmp_path)
    stats = ReplayStats()
    recorder = Recorder.begin(checkpoint, paths, connection(), stats, resume=True)
    assert recorder.position == 7
    assert (stats.batches, stats.events_in, stats.queued_events, dict(stats.dropped)) == (
        7,
        9,
        8,
        {"no_email_or_phone": 1},
    )
    assert [(where, error.pointer) for where, error in stats.input_errors] == [("a.jsonl:3", "/events/0")]
    assert (stats.settled, stats.settled_before, stats.events_delivered) == (5, 5, 6)


def test_an_interrupted_run_reports_only_what_was_committed(tmp_path: Path) -> None:
    paths = inputs(tmp_path)
    stats = ReplayStats()
    recorder = Recorder.begin(Checkpoint(location(paths)), paths, connection(), stats, resume=False)
    stats.batches = 3
    recorder.committed(3, stats)
    stats.batches = 5
    recorder.finish(stats, complete=False)
    assert stats.batches == 3


def test_a_new_replay_over_a_checkpoint_is_refused(tmp_path: Path) -> None:
    paths, checkpoint = interrupted(tmp_path)
    with pytest.raises(CheckpointError, match="add --resume"):
        Recorder.begin(checkpoint, paths, connection(), ReplayStats(), resume=False)
    assert checkpoint.exists()


def test_a_resume_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    paths = inputs(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        Recorder.begin(Checkpoint(location(paths)), paths, connection(), ReplayStats(), resume=True)


def test_a_resume_of_changed_inputs_is_refused(tmp_path: Path) -> None:
    paths, checkpoint = interrupted(tmp_path)
    paths[1].write_text('{"changed": true}\n')
    with pytest.raises(CheckpointError, match=r"changed since: .*b\.jsonl"):
        Recorder.begin(checkpoint, paths, connection(), ReplayStats(), resume=True)


@pytest.mark.parametrize(
    ("other", "problem"),
    [({"name": "other"}, "for connection 'shop'"), ({"url": "http://127.0.0.1:2"}, "for connection 'shop'")],
)
def test_a_resume_with_another_connection_is_refused(tmp_path: Path, other: dict[str, str], problem: str) -> None:
    paths, checkpoint = interrupted(tmp_path)
    with pytest.raises(CheckpointError, match=problem):
        Recorder.begin(checkpoint, paths, connection(**other), ReplayStats(), resume=True)


def test_a_resume_of_other_files_is_refused(tmp_path: Path) -> None:
    paths, checkpoint = interrupted(tmp_path)
    with pytest.raises(CheckpointError, match="for other input files"):
        Recorder.begin(checkpoint, paths[:1], connection(), ReplayStats(), resume=True)


def test_a_complete_run_deletes_its_checkpoint(tmp_path: Path) -> None:
    paths = inputs(tmp_path)
    checkpoint, stats = Checkpoint(location(paths)), ReplayStats()
    recorder = Recorder.begin(checkpoint, paths, connection(), stats, resume=False)
    checkpoint.store_path.write_bytes(b"")
    recorder.finish(stats, complete=True)
    assert not checkpoint.directory.exists()
    assert stats.checkpoint is None


def test_the_checkpoint_file_holds_no_key(tmp_path: Path) -> None:
    _, checkpoint = interrupted(tmp_path)
    state = json.loads(checkpoint.state_path.read_text())
    assert state["connection"] == "shop" and state["position"] == 7
    assert "DEMO01" not in checkpoint.state_path.read_text()
