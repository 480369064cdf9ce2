"""``POST /firehose``: registration without auth, Token-authenticated event processing, the rest refused clearly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

from mparticle_klaviyo.jobs.erasure import decode_erasure_job
from mparticle_klaviyo.jobs.plan import decode_payload, unique_id_of
from tests.service.live import ACME_TOKEN, BETA_TOKEN, CONNECTIONS, LiveApp, token
from tests.service.messages import (
    audience_subscription_request,
    dsr_request,
    firehose_events,
    registration_request,
)


def test_registration_is_answered_without_credentials(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", registration_request())
    body = answer.json()
    assert answer.status == 200
    assert body["type"] == "module_registration_response"
    assert body["id"] == "reg-1"
    assert "custom_event" in body["event_processing_registration"]["supported_event_types"]


def test_registration_ignores_a_wrong_token(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", registration_request(), token("not-a-token"))
    assert answer.status == 200


def test_an_event_processing_request_with_the_token_is_committed_before_the_answer(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", firehose_events("fh@example.com"), token())
        jobs = app.jobs()
    body = answer.json()
    assert answer.status == 200
    assert (body["type"], body["id"]) == ("event_processing_response", firehose_events()["id"])
    assert [(j.connection, unique_id_of(j.key), j.profile_key) for j in jobs] == [
        ("acme", "fh-event-1", "email:fh@example.com")
    ]
    assert decode_payload(jobs[0].payload).source == "firehose"


def test_the_token_chooses_the_connection(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        assert app.post("/firehose", firehose_events(), token(BETA_TOKEN)).status == 200
        assert [job.connection for job in app.jobs()] == ["beta"]


def test_an_event_processing_request_without_authorization_is_401_and_stores_nothing(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", firehose_events())
        assert app.jobs() == []
    assert (answer.status, answer.error["code"]) == (401, "UNAUTHORIZED")


def test_an_event_processing_request_with_a_wrong_token_is_403_and_stores_nothing(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", firehose_events(), token(ACME_TOKEN + "x"))
        assert app.jobs() == []
    assert (answer.status, answer.error["code"]) == (403, "FORBIDDEN")


@pytest.mark.parametrize("header", [f"Bearer {ACME_TOKEN}", ACME_TOKEN, "Token ", "Token"])
def test_anything_but_token_and_a_value_is_401(tmp_path: Path, header: str) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", firehose_events(), {"Authorization": header})
    assert answer.status == 401


def test_the_token_scheme_is_case_insensitive(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", firehose_events(), {"Authorization": f"token {ACME_TOKEN}"})
    assert answer.status == 200


def test_a_verification_request_without_events_is_answered_normally_and_stores_nothing(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", firehose_events(events=[]), token())
        assert app.jobs() == []
    assert answer.status == 200
    assert answer.json()["type"] == "event_processing_response"


def test_a_verification_request_is_answered_even_when_the_backlog_is_full(tmp_path: Path) -> None:
    with LiveApp(tmp_path, high_water_mark=1) as app:
        assert app.post("/firehose", firehose_events("a@example.com", request_id="r1"), token()).status == 200
        answer = app.post("/firehose", firehose_events(events=[], request_id="r2"), token())
    assert answer.status == 200


def test_a_full_backlog_is_503_with_retry_after_and_stores_nothing_more(tmp_path: Path) -> None:
    second = firehose_events("b@example.com", request_id="r2")
    second["events"][0]["id"] = "fh-event-2"
    with LiveApp(tmp_path, high_water_mark=1) as app:
        assert app.post("/firehose", firehose_events("a@example.com", request_id="r1"), token()).status == 200
        answer = app.post("/firehose", second, token())
        keys = [unique_id_of(job.key) for job in app.jobs()]
    assert (answer.status, answer.error["code"]) == (503, "BACKLOG_FULL")
    assert int(answer.headers["retry-after"]) > 0
    assert keys == ["fh-event-1"]


@pytest.mark.parametrize("message", [audience_subscription_request(), dsr_request()], ids=["audience", "dsr"])
def test_audience_and_dsr_requests_are_400_unsupported_with_a_reason(tmp_path: Path, message: dict[str, Any]) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", message, token())
        assert app.jobs() == []
    assert answer.status == 400
    assert (answer.error["code"], answer.error["pointer"]) == ("UNSUPPORTED", "/type")
    assert "not supported" in answer.error["message"]


def test_an_audience_membership_change_is_400_unsupported(tmp_path: Path) -> None:
    message = {**audience_subscription_request(), "type": "audience_membership_change_request", "user_profiles": []}
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", message, token())
    assert (answer.status, answer.error["code"]) == (400, "UNSUPPORTED")


def test_an_unknown_message_type_is_400_pointing_at_type(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", {"type": "pizza_order_request"}, token())
    assert (answer.status, answer.error["code"], answer.error["pointer"]) == (400, "BAD_REQUEST", "/type")


def test_a_message_without_a_type_is_400_naming_the_missing_field(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", {"id": "x"}, token())
    assert (answer.status, answer.error["pointer"], answer.error["message"]) == (
        400,
        "/type",
        "required field is missing",
    )


@pytest.mark.parametrize("body", [b"[]", b'"event_processing_request"', b"{", b'{"type": "\xff"}', b""])
def test_a_body_that_is_not_a_json_object_is_400(tmp_path: Path, body: bytes) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", body, token())
    assert (answer.status, answer.error["code"]) == (400, "BAD_REQUEST")


def test_deeply_nested_json_is_400_not_a_crash(tmp_path: Path) -> None:
    body = b'{"type": "event_processing_request", "x": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", body, token())
    assert (answer.status, answer.error["message"]) == (400, "malformed JSON: nested too deeply")


def test_a_field_of_the_wrong_type_is_400_with_its_pointer(tmp_path: Path) -> None:
    message = firehose_events()
    message["events"][0]["timestamp_ms"] = "yesterday"
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", message, token())
        assert app.jobs() == []
    assert (answer.status, answer.error["pointer"]) == (400, "/events/0/timestamp_ms")


def test_account_settings_override_the_connections_settings(tmp_path: Path) -> None:
    # The email is in "other": only the request's externalEmailIdentityType makes it the email.
    message = firehose_events(settings={"externalEmailIdentityType": "Other", "phoneIdentifier": ""})
    message["user_identities"] = [{"type": "other", "encoding": "raw", "value": "other@example.com"}]
    with LiveApp(tmp_path) as app:
        assert app.post("/firehose", message, token()).status == 200
        jobs = app.jobs()
    assert [job.profile_key for job in jobs] == ["email:other@example.com"]
    assert decode_payload(jobs[0].payload).settings == {"externalEmailIdentityType": "Other", "phoneIdentifier": ""}


def test_without_the_override_the_same_request_is_dropped_for_lack_of_an_email(tmp_path: Path) -> None:
    message = firehose_events()
    message["user_identities"] = [{"type": "other", "encoding": "raw", "value": "other@example.com"}]
    with LiveApp(tmp_path) as app:
        assert app.post("/firehose", message, token()).status == 200
        assert app.jobs() == []
        metrics = app.get("/metrics").body.decode()
    assert 'mpk_events_dropped_total{connection="acme",reason="no_email_or_phone"} 1.0' in metrics


def test_an_invalid_account_setting_is_400_naming_the_setting(tmp_path: Path) -> None:
    message = firehose_events(settings={"phoneIdentifier": "Fax"})
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", message, token())
        assert app.jobs() == []
    assert (answer.status, answer.error["pointer"]) == (400, "/account/account_settings/phoneIdentifier")


def test_hashed_identities_are_not_used_as_emails(tmp_path: Path) -> None:
    message = firehose_events()
    message["user_identities"] = [{"type": "email", "encoding": "sha256", "value": "ab" * 32}]
    with LiveApp(tmp_path) as app:
        assert app.post("/firehose", message, token()).status == 200
        assert app.jobs() == []


def test_the_stored_job_keeps_the_normalised_request(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        app.post("/firehose", firehose_events("keep@example.com"), token())
        (job,) = app.jobs()
    stored = msgspec.to_builtins(decode_payload(job.payload))
    assert stored["identities"] == {"email": "keep@example.com"}
    assert stored["platform"] == "ios"
    assert [event["name"] for event in stored["events"]] == ["Opened Firehose"]


def test_a_request_for_another_klaviyo_account_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", firehose_events(settings={"publicApiKey": "OTHER9"}), token())
        assert app.jobs() == []
    assert (answer.status, answer.error["pointer"]) == (400, "/account/account_settings/publicApiKey")
    assert "OTHER9" not in answer.body.decode()


def test_settings_about_where_data_goes_cannot_be_overridden_by_a_request(tmp_path: Path) -> None:
    settings = {"klaviyoUrl": "http://evil.example", "privateApiKey": "pk_evil", "firehoseToken": "x"}
    with LiveApp(tmp_path) as app:
        answer = app.post("/firehose", firehose_events(settings=settings), token())
        [job] = app.jobs()
    assert answer.status == 200
    # The stored request keeps its settings, but delivery ignores everything but mapping settings.
    assert decode_payload(job.payload).settings == settings


ERASING = {
    "acme": {**CONNECTIONS["acme"], "private_api_key": "pk_" + "e" * 32, "forward_erasure": True},
    "beta": CONNECTIONS["beta"],
}


def test_with_forward_erasure_an_erasure_is_stored_then_answered(tmp_path: Path) -> None:
    with LiveApp(tmp_path, ERASING) as app:
        answer = app.post("/firehose", dsr_request(), token())
        jobs = app.jobs()
        erasures = app.metrics.registry.get_sample_value("mpk_erasures_accepted_total", {"connection": "acme"})
    body = answer.json()
    assert answer.status == 200
    assert (body["type"], body["id"], body["firehose_version"]) == ("dsr_processing_response", "dsr-1", "3.2.0")
    assert [(j.kind, j.key, j.profile_key) for j in jobs] == [
        ("erasure", "erasure:subject-request-1", "email:ada@example.com")
    ]
    assert decode_erasure_job(jobs[0].payload).email == "ada@example.com"
    assert erasures == 1


def test_the_same_erasure_sent_again_is_stored_once(tmp_path: Path) -> None:
    with LiveApp(tmp_path, ERASING) as app:
        assert app.post("/firehose", dsr_request(), token()).status == 200
        assert app.post("/firehose", dsr_request(), token()).status == 200
        assert len(app.jobs()) == 1


def test_an_erasure_for_a_connection_without_forward_erasure_is_refused(tmp_path: Path) -> None:
    with LiveApp(tmp_path, ERASING) as app:
        answer = app.post("/firehose", dsr_request(), token(BETA_TOKEN))
        assert app.jobs() == []
    assert (answer.status, answer.error["code"], answer.error["pointer"]) == (400, "UNSUPPORTED", "/type")
    assert "forward_erasure" in answer.error["message"]


@pytest.mark.parametrize(
    ("changes", "pointer"),
    [
        ({"subject_request_type": "portability"}, "/subject_request_type"),
        ({"subject_identities": {"customer_id": {"encoding": "raw", "value": "c-1"}}}, "/subject_identities"),
        ({"subject_identities": "ada@example.com"}, "/subject_identities"),
    ],
)
def test_an_erasure_that_cannot_be_forwarded_is_400_naming_the_field(
    tmp_path: Path, changes: dict[str, Any], pointer: str
) -> None:
    with LiveApp(tmp_path, ERASING) as app:
        answer = app.post("/firehose", {**dsr_request(), **changes}, token())
        assert app.jobs() == []
    assert (answer.status, answer.error["pointer"]) == (400, pointer)


def test_an_erasure_without_the_token_is_401(tmp_path: Path) -> None:
    with LiveApp(tmp_path, ERASING) as app:
        answer = app.post("/firehose", dsr_request())
        assert app.jobs() == []
    assert answer.status == 401


def test_registration_declares_erasure_support_only_when_a_connection_forwards_erasures(tmp_path: Path) -> None:
    with LiveApp(tmp_path / "on", ERASING) as app:
        declared = app.post("/firehose", registration_request()).json()
    with LiveApp(tmp_path / "off") as app:
        plain = app.post("/firehose", registration_request()).json()
    assert declared["dsr_processing_registration"]["supported_dsr_types"] == ["erasure"]
    assert "dsr_processing_registration" not in plain
