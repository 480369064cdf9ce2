"""``POST /webhook/{connection}``: mParticle's Webhook output, with its configured Authorization value."""

from __future__ import annotations

from pathlib import Path

import pytest

from mparticle_klaviyo.jobs.plan import unique_id_of
from tests.service.live import ACME_WEBHOOK, BETA_WEBHOOK, CONNECTIONS, LiveApp, webhook
from tests.service.messages import batch, firehose_events, outbound_batch


def test_an_outbound_batch_with_the_configured_authorization_is_202_and_committed(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/webhook/acme", outbound_batch("hook@example.com"), webhook())
        jobs = app.jobs()
    assert (answer.status, answer.body) == (202, b"")
    assert [(j.connection, unique_id_of(j.key), j.profile_key) for j in jobs] == [
        ("acme", "out-0", "email:hook@example.com")
    ]


def test_the_path_names_the_connection(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        assert app.post("/webhook/beta", outbound_batch(), webhook(BETA_WEBHOOK)).status == 202
        assert [job.connection for job in app.jobs()] == ["beta"]


def test_an_array_of_outbound_batches_is_accepted(tmp_path: Path) -> None:
    batches = [outbound_batch("a@example.com"), {**outbound_batch("b@example.com", 2), "batch_id": 2}]
    batches[1]["events"][0]["data"]["source_message_id"] = "b-0"
    batches[1]["events"][1]["data"]["source_message_id"] = "b-1"
    with LiveApp(tmp_path) as app:
        assert app.post("/webhook/acme", batches, webhook()).status == 202
        assert [unique_id_of(job.key) for job in app.jobs()] == ["out-0", "b-0", "b-1"]


def test_an_inbound_shaped_batch_is_accepted_too(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        assert app.post("/webhook/acme", batch("in@example.com"), webhook()).status == 202
        assert len(app.jobs()) == 1


def test_missing_authorization_is_401_and_stores_nothing(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/webhook/acme", outbound_batch())
        assert app.jobs() == []
    assert (answer.status, answer.error["code"]) == (401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    "header", [ACME_WEBHOOK + "x", ACME_WEBHOOK.lower(), BETA_WEBHOOK, "Bearer", ACME_WEBHOOK.split()[1]]
)
def test_any_other_authorization_value_is_403(tmp_path: Path, header: str) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/webhook/acme", outbound_batch(), webhook(header))
        assert app.jobs() == []
    assert (answer.status, answer.error["code"]) == (403, "FORBIDDEN")


def test_an_unknown_connection_is_403(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/webhook/nobody", outbound_batch(), webhook())
    assert answer.status == 403


def test_a_connection_without_a_webhook_authorization_has_no_webhook_input(tmp_path: Path) -> None:
    tables = {"acme": {k: v for k, v in CONNECTIONS["acme"].items() if k != "webhook_authorization"}}
    with LiveApp(tmp_path, tables) as app:
        answer = app.post("/webhook/acme", outbound_batch(), webhook())
        assert app.jobs() == []
    assert answer.status == 403


def test_a_firehose_message_is_400_pointing_at_its_type(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/webhook/acme", firehose_events(), webhook())
        assert app.jobs() == []
    assert (answer.status, answer.error["pointer"]) == (400, "/type")


def test_a_bad_batch_in_an_array_stores_nothing_and_points_into_it(tmp_path: Path) -> None:
    bad = outbound_batch("b@example.com")
    bad["user_identities"] = [{"identity": "b@example.com"}]
    with LiveApp(tmp_path) as app:
        answer = app.post("/webhook/acme", [outbound_batch("a@example.com"), bad], webhook())
        assert app.jobs() == []
    assert (answer.status, answer.error["pointer"]) == (400, "/1/user_identities/0/identity_type")


def test_a_full_backlog_is_503_with_retry_after(tmp_path: Path) -> None:
    second = outbound_batch("b@example.com")
    second["events"][0]["data"]["source_message_id"] = "other"
    with LiveApp(tmp_path, high_water_mark=1) as app:
        assert app.post("/webhook/acme", outbound_batch("a@example.com"), webhook()).status == 202
        answer = app.post("/webhook/acme", second, webhook())
        assert len(app.jobs()) == 1
    assert (answer.status, answer.error["code"]) == (503, "BACKLOG_FULL")
    assert int(answer.headers["retry-after"]) > 0
