"""The playground maps a pasted or uploaded file as ``map`` does, and sends nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mparticle_klaviyo.console.playground import MAX_INPUT_BYTES, mapped_lines, results, source_name
from mparticle_klaviyo.delivery.batch_requests import map_lines
from mparticle_klaviyo.jobs.inputs import map_item, read_inputs
from tests.console.helpers import PASSWORD, client, logged_in, served
from tests.service.e2e_helpers import custom_event, run_async, user_batch
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
    assert lines[0]["location"] == "pasted:1", "one line: located as map locates a one-line file"


def test_an_unknown_connection_is_an_error_line(tmp_path: Path) -> None:
    assert mapped_lines(b"{}", make_config(tmp_path / "jobs.sqlite3"), "nope")[0]["kind"] == "error"


def test_results_mask_emails_unless_asked_to_show_them() -> None:
    lines = [{"kind": "request", "body": {"email": "pat@example.com"}}]
    assert "pat@example.com" not in results(lines, reveal=False)
    assert "pat@example.com" in results(lines, reveal=True)


def json_lines(*batches: dict[str, Any]) -> bytes:
    return "".join(json.dumps(b) + "\n" for b in batches).encode()


def test_json_lines_of_batches_map_as_map_maps_the_same_file(tmp_path: Path) -> None:
    raw = json_lines(user_batch("pat", [custom_event("m-1")]), user_batch("sam", [custom_event("m-2")]))
    config = make_config(tmp_path / "jobs.sqlite3")
    lines = mapped_lines(raw, config, "acme", "export.jsonl")
    (tmp_path / "export.jsonl").write_bytes(raw)
    printed = [
        line
        for item in read_inputs([tmp_path / "export.jsonl"])
        for line in map_lines(map_item(item, config.connections["acme"], time.time() * 1000))
    ]
    assert [line["kind"] for line in lines] == [line["kind"] for line in printed] == ["request", "request"]
    assert [line["path"] for line in lines] == [line["path"] for line in printed]


def test_a_bad_line_of_an_upload_is_an_error_at_its_line_with_a_pointer_and_the_rest_still_maps(
    tmp_path: Path,
) -> None:
    raw = json_lines(user_batch("pat", [custom_event("m-1")]), {"events": 3})
    lines = mapped_lines(raw, make_config(tmp_path / "jobs.sqlite3"), "acme", "export.jsonl")
    assert [line["kind"] for line in lines] == ["request", "error"]
    assert (lines[1]["location"], lines[1]["pointer"]) == ("export.jsonl:2", "/events")


def test_an_uploaded_files_name_is_kept_as_a_label_only() -> None:
    assert source_name("C:\\Users\\me\\export.jsonl") == "export.jsonl"
    assert source_name("../../etc/passwd\n") == "passwd"
    assert source_name("") == "pasted"


def post_playground(tmp_path: Path, fields: dict[str, str]) -> tuple[int, str]:
    """POST the playground form (as the browser does after loading a file); the status and page."""
    answers: list[tuple[int, str]] = []

    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            csrf = await logged_in(session, app.url)
            form = {"csrf": csrf, "connection": "acme", **fields}
            async with session.post(f"{app.url}/console/playground", data=form) as answer:
                answers.append((answer.status, await answer.text()))

    run_async(go())
    return answers[0]


def test_an_uploaded_file_is_mapped_and_its_name_kept_in_the_form(tmp_path: Path) -> None:
    raw = json_lines(user_batch("pat", [custom_event("m-1")]), user_batch("sam", [custom_event("m-2")]))
    status, text = post_playground(tmp_path, {"batch": raw.decode(), "source": "export.jsonl"})
    assert status == 200
    assert "2 request(s), 0 drop(s) or warning(s), 0 error(s)" in text
    assert 'name=source id=source value="export.jsonl"' in text
    assert "pat@example.com" not in text.partition("<h2>Result</h2>")[2], "masked unless asked"


def test_a_file_over_the_byte_budget_is_refused_with_a_message_naming_the_limit(tmp_path: Path) -> None:
    status, text = post_playground(tmp_path, {"batch": " " * (MAX_INPUT_BYTES + 1), "source": "big.json"})
    assert status == 400
    assert "at most 1,048,576 bytes (1 MiB)" in text


def test_malformed_json_in_an_upload_is_an_error_naming_the_json_pointer(tmp_path: Path) -> None:
    status, text = post_playground(tmp_path, {"batch": '{"events": 3}', "source": "bad.json"})
    assert status == 200
    assert "1 error(s)" in text
    assert "&quot;pointer&quot;: &quot;/events&quot;" in text
    assert "&quot;location&quot;: &quot;bad.json:1&quot;" in text
