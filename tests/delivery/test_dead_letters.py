"""Dead letters one can work with: every failure counted, the cause kept, one log line per event."""

from __future__ import annotations

import datetime
import json
import logging
import time
from pathlib import Path

import pytest

from mparticle_klaviyo.delivery.dead_letters import MAX_LOGGED_IDS, job_fields, redrive_logged
from mparticle_klaviyo.observe.logs import JsonFormatter
from mparticle_klaviyo.store.base import DeadFilter, Job
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.service.e2e_helpers import (
    PUBLIC_KEY,
    custom_event,
    free_port,
    options,
    run_async,
    run_cli,
    user_batch,
    write_service_config,
)
from tests.service.rig import DeliveryRig

DELIVERY_LOG = "mparticle_klaviyo.delivery"


def deliver_against(tmp_path: Path, fault: dict[str, object], **knobs: object) -> list[Job]:
    """Deliver one job to an emulator answering with ``fault``; the dead jobs afterwards."""
    dead: list[Job] = []

    async def scenario() -> None:
        batches = [user_batch("ada", [custom_event("m0")])]
        async with DeliveryRig(tmp_path, faults=[fault], batches=batches, options=options(**knobs)) as rig:
            await rig.until_empty()
            await rig.shutdown()
            dead.extend(await rig.dead())

    run_async(scenario())
    return dead


def lines(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    """The delivery log's records with ``message``."""
    return [r for r in caplog.records if r.name == DELIVERY_LOG and r.getMessage() == message]


def iso(text: str) -> datetime.datetime:
    """An ISO time of a log field, parsed (so that a wrong format fails)."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_job_failing_three_times_is_dead_lettered_with_three_attempts(tmp_path: Path) -> None:
    [dead] = deliver_against(tmp_path, {"status": 503}, max_attempts=3)
    assert dead.attempts == 3


def test_the_reason_of_a_job_that_gave_up_on_503s_keeps_the_status(tmp_path: Path) -> None:
    [dead] = deliver_against(tmp_path, {"status": 503}, max_attempts=3)
    assert dead.dead_reason == "retries_exhausted:http_503"


def test_dlq_list_reason_http_503_finds_the_jobs_that_gave_up_on_503s(tmp_path: Path) -> None:
    [dead] = deliver_against(tmp_path, {"status": 503}, max_attempts=2)
    config = write_service_config(tmp_path, "http://127.0.0.1:9", free_port())
    result: list[tuple[int, str, str]] = []

    async def go() -> None:
        result.append(await run_cli("dlq", "list", "--config", str(config), "--reason", "http_503", cwd=tmp_path))

    run_async(go())
    code, out, err = result[0]
    assert code == 0, err
    assert f" {dead.id} " in out and "retries_exhausted:http_503" in out


def test_a_permanent_refusal_counts_as_the_jobs_attempt(tmp_path: Path) -> None:
    [dead] = deliver_against(tmp_path, {"status": 400})
    assert (dead.dead_reason, dead.attempts) == ("http_400", 1)


def test_every_retry_is_one_log_line_with_the_cause_the_count_and_when_it_is_due(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo")
    started = time.time()
    [dead] = deliver_against(tmp_path, {"status": 503}, max_attempts=3)
    retries = lines(caplog, "retrying")
    assert [r.attempts for r in retries] == [1, 2]  # type: ignore[attr-defined]
    for record in retries:
        fields = record.__dict__
        assert (fields["job_ids"], fields["jobs"], fields["connection"]) == ([dead.id], 1, "acme")
        assert (fields["reason"], fields["status"]) == ("http_503", 503)
        assert iso(fields["next_due"]).timestamp() >= started


def test_a_dead_letter_is_one_log_line_with_its_reason_status_and_attempts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo")
    [dead] = deliver_against(tmp_path, {"status": 503}, max_attempts=3)
    [record] = lines(caplog, "dead-lettered")
    fields = record.__dict__
    assert (fields["job_ids"], fields["jobs"], fields["connection"]) == ([dead.id], 1, "acme")
    assert (fields["reason"], fields["status"], fields["attempts"]) == ("retries_exhausted:http_503", 503, 3)


def test_a_429_is_one_log_line_with_the_status_and_when_the_job_is_due_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo")
    started = time.time()
    assert deliver_against(tmp_path, {"status": 429, "count": 1}, default_retry_after_s=0.2) == []
    [record] = lines(caplog, "throttled")
    fields = record.__dict__
    assert (fields["jobs"], fields["connection"], fields["reason"], fields["status"]) == (1, "acme", "throttled", 429)
    assert iso(fields["next_due"]).timestamp() >= started + 0.1


@pytest.mark.parametrize(("status", "reason"), [(500, "max_age:http_500"), (429, "max_age:throttled")])
def test_a_job_too_old_to_retry_names_the_age_limit_and_its_last_failure(
    tmp_path: Path, status: int, reason: str
) -> None:
    [dead] = deliver_against(tmp_path, {"status": status}, max_age_s=0.0)
    assert dead.dead_reason == reason
    assert dead.attempts == (1 if status == 500 else 0), "a 429 is no attempt, even the last one"


def test_delivery_logs_name_no_key_email_or_payload(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="mparticle_klaviyo")
    deliver_against(tmp_path, {"status": 503}, max_attempts=2)
    text = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert "retrying" in text and "dead-lettered" in text
    for secret in ("@example.com", PUBLIC_KEY, "m0", "Clicked"):
        assert secret not in text


def test_log_lines_name_at_most_twenty_ids_and_count_them_all() -> None:
    assert job_fields(list(range(100))) == {"job_ids": list(range(MAX_LOGGED_IDS)), "jobs": 100}
    assert json.dumps(job_fields([7])) == '{"job_ids": [7], "jobs": 1}'


def test_a_redrive_is_one_log_line_naming_its_jobs_and_filter(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    [dead] = deliver_against(tmp_path, {"status": 503}, max_attempts=1)
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo")
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    try:
        assert redrive_logged(store, DeadFilter(reason="http_503"), time.time()) == 1
        assert redrive_logged(store, DeadFilter(reason="http_503"), time.time()) == 0
    finally:
        store.close()
    [record] = [r for r in caplog.records if r.getMessage() == "redriven"]
    fields = record.__dict__
    assert (record.name, fields["job_ids"], fields["jobs"]) == ("mparticle_klaviyo.dlq", [dead.id], 1)
    assert (fields["connection"], fields["reason"]) == (None, "http_503")
