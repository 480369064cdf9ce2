"""The playground maps as ``map`` does, and sends nothing."""

from __future__ import annotations

import json
from pathlib import Path

from mparticle_klaviyo.console.playground import mapped_lines, results
from tests.service.e2e_helpers import custom_event, user_batch
from tests.service.live import make_config


def test_a_batch_gives_maps_request_and_drop_lines(tmp_path: Path) -> None:
    crash = {"event_type": "crash_report", "data": {}}
    raw = json.dumps(user_batch("pat", [custom_event("m-1"), crash])).encode()
    lines = mapped_lines(raw, make_config(tmp_path / "jobs.sqlite3"), "acme")
    assert [line.get("kind") for line in lines] == ["request", "dropped"]
    assert lines[0]["path"] == "/client/events?company_id=***"
    assert lines[1]["reason"] == "unsupported_event_type"


def test_bad_json_gives_one_error_line_with_a_pointer(tmp_path: Path) -> None:
    lines = mapped_lines(b'{"events": 3}', make_config(tmp_path / "jobs.sqlite3"), "acme")
    assert len(lines) == 1
    assert lines[0]["kind"] == "error"
    assert lines[0]["pointer"] == "/events"


def test_an_unknown_connection_is_an_error_line(tmp_path: Path) -> None:
    assert mapped_lines(b"{}", make_config(tmp_path / "jobs.sqlite3"), "nope")[0]["kind"] == "error"


def test_results_mask_emails_unless_asked_to_show_them() -> None:
    lines = [{"kind": "request", "body": {"email": "pat@example.com"}}]
    assert "pat@example.com" not in results(lines, reveal=False)
    assert "pat@example.com" in results(lines, reveal=True)
