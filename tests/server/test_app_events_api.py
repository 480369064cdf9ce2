"""``POST /v2/events`` and ``/v2/bulkevents``: mParticle's Events API, as its server SDKs call it."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from mparticle_klaviyo.jobs.plan import unique_id_of
from tests.service.live import ACME_KEY, ACME_SECRET, BETA_KEY, BETA_SECRET, LiveApp, basic, gzipped, send
from tests.service.messages import batch, event, firehose_events


def padded(email: str, size: int) -> dict[str, Any]:
    """A batch whose JSON is about ``size`` bytes (a long user attribute)."""
    return batch(email, user_attributes={"notes": "x" * size})


def test_one_batch_with_basic_credentials_is_202_and_committed(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", batch("ada@example.com"), basic())
        jobs = app.jobs()
    assert (answer.status, answer.body) == (202, b"")
    assert [(j.connection, unique_id_of(j.key), j.profile_key, j.kind) for j in jobs] == [
        ("acme", "msg-1", "email:ada@example.com", "event")
    ]


def test_key_and_secret_choose_the_connection(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        assert app.post("/v2/events", batch(), basic(BETA_KEY, BETA_SECRET)).status == 202
        assert [job.connection for job in app.jobs()] == ["beta"]


def test_missing_credentials_are_401_and_store_nothing(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", batch())
        assert app.jobs() == []
    assert (answer.status, answer.error["code"]) == (401, "UNAUTHORIZED")


@pytest.mark.parametrize(
    ("key", "secret"),
    [(ACME_KEY, "wrong"), (ACME_KEY, BETA_SECRET), ("nobody", ACME_SECRET)],
    ids=["wrong-secret", "other-connections-secret", "unknown-key"],
)
def test_wrong_credentials_are_403_and_store_nothing(tmp_path: Path, key: str, secret: str) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", batch(), basic(key, secret))
        assert app.jobs() == []
    assert (answer.status, answer.error["code"]) == (403, "FORBIDDEN")


@pytest.mark.parametrize(
    "header",
    [
        f"Token {ACME_SECRET}",
        "Basic !!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic é",
        "Basic",
        "Basic " + base64.b64encode(f"{ACME_KEY}:".encode()).decode(),
        "Basic Og==",  # ":" — empty key and secret
    ],
    ids=["other-scheme", "not-base64", "no-colon", "not-ascii", "no-value", "empty-secret", "empty-both"],
)
def test_malformed_basic_credentials_are_401(tmp_path: Path, header: str) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", batch(), {"Authorization": header})
    assert (answer.status, answer.error["code"]) == (401, "UNAUTHORIZED")


def test_a_field_of_the_wrong_type_is_400_with_its_json_pointer(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", batch(events=[event(), {"event_type": 5}]), basic())
        assert app.jobs() == []
    assert answer.status == 400
    assert answer.error == {
        "code": "BAD_REQUEST",
        "message": "Expected str, got int",
        "pointer": "/events/1/event_type",
    }


def test_a_missing_required_field_is_400_naming_it(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", batch(events=[{"data": {}}]), basic())
    assert (answer.status, answer.error["pointer"], answer.error["message"]) == (
        400,
        "/events/0/event_type",
        "required field is missing",
    )


@pytest.mark.parametrize("body", [b"{", b"", b"null", b"42", b"{}", b'{"events": NaN}'])
def test_a_body_that_is_not_a_batch_is_400(tmp_path: Path, body: bytes) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", body, basic())
    assert (answer.status, answer.error["code"], answer.error["pointer"]) == (400, "BAD_REQUEST", "")


def test_an_array_sent_to_events_is_400_pointing_to_bulkevents(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", [batch()], basic())
        assert app.jobs() == []
    assert answer.status == 400
    assert "/v2/bulkevents" in answer.error["message"]


def test_a_firehose_message_sent_to_events_is_400(tmp_path: Path) -> None:
    # Firehose requests carry connection settings; only /firehose may apply them.
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", firehose_events(settings={"externalEmailIdentityType": "Other"}), basic())
        assert app.jobs() == []
    assert (answer.status, answer.error["pointer"]) == (400, "/type")


def test_a_batch_over_128_kb_is_413(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", padded("big@example.com", 128 * 1024), basic())
        assert app.jobs() == []
    assert (answer.status, answer.error["code"]) == (413, "PAYLOAD_TOO_LARGE")


def test_a_batch_just_under_128_kb_is_accepted(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", padded("big@example.com", 120 * 1024), basic())
    assert answer.status == 202


def test_a_gzipped_batch_is_accepted(tmp_path: Path) -> None:
    headers = {**basic(), "Content-Type": "application/json", "Content-Encoding": "gzip"}
    with LiveApp(tmp_path) as app:
        answer = send(app.url, "POST", "/v2/events", gzipped(batch("zip@example.com")), headers)
        assert [job.profile_key for job in app.jobs()] == ["email:zip@example.com"]
    assert answer.status == 202


def test_a_body_that_is_not_the_gzip_it_claims_is_400(tmp_path: Path) -> None:
    headers = {**basic(), "Content-Encoding": "gzip"}
    with LiveApp(tmp_path) as app:
        answer = send(app.url, "POST", "/v2/events", b'{"events": []}', headers)
    assert (answer.status, answer.error["code"]) == (400, "BAD_REQUEST")


def test_an_integer_beyond_64_bits_in_an_attribute_is_accepted_and_stored(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", batch(events=[event(custom_attributes={"$event_id": 2**80})]), basic())
        assert [unique_id_of(job.key) for job in app.jobs()] == [str(2**80)]
    assert answer.status == 202


def test_a_full_backlog_is_429_with_retry_after(tmp_path: Path) -> None:
    with LiveApp(tmp_path, high_water_mark=1) as app:
        assert app.post("/v2/events", batch("a@example.com", [event(message_id="m1")]), basic()).status == 202
        answer = app.post("/v2/events", batch("b@example.com", [event(message_id="m2")]), basic())
        keys = [unique_id_of(job.key) for job in app.jobs()]
    assert (answer.status, answer.error["code"]) == (429, "BACKLOG_FULL")
    assert int(answer.headers["retry-after"]) > 0
    assert keys == ["m1"]


def test_a_bulk_of_batches_is_committed_in_one_request(tmp_path: Path) -> None:
    batches = [batch(f"user{n}@example.com", [event(message_id=f"m{n}")]) for n in range(3)]
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/bulkevents", batches, basic())
        jobs = app.jobs()
    assert answer.status == 202
    assert [job.profile_key for job in jobs] == [f"email:user{n}@example.com" for n in range(3)]


def test_a_bulk_with_one_bad_batch_stores_nothing_and_points_into_that_batch(tmp_path: Path) -> None:
    batches = [batch("a@example.com", [event(message_id="m1")]), batch(events=[{"event_type": "x", "data": 3}])]
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/bulkevents", batches, basic())
        assert app.jobs() == []
    assert (answer.status, answer.error["pointer"]) == (400, "/1/events/0/data")


def test_a_bulk_of_100_batches_is_accepted(tmp_path: Path) -> None:
    batches = [batch(f"u{n}@example.com", [event(message_id=f"m{n}")]) for n in range(100)]
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/bulkevents", batches, basic())
        assert len(app.jobs()) == 100
    assert answer.status == 202


def test_a_bulk_of_101_batches_is_413_and_stores_nothing(tmp_path: Path) -> None:
    batches = [batch(f"u{n}@example.com", [event(message_id=f"m{n}")]) for n in range(101)]
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/bulkevents", batches, basic())
        assert app.jobs() == []
    assert (answer.status, answer.error["code"]) == (413, "PAYLOAD_TOO_LARGE")


def test_a_bulk_with_one_batch_over_128_kb_is_413_pointing_at_it(tmp_path: Path) -> None:
    batches = [batch("a@example.com"), padded("big@example.com", 128 * 1024)]
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/bulkevents", batches, basic())
        assert app.jobs() == []
    assert (answer.status, answer.error["pointer"]) == (413, "/1")


@pytest.mark.parametrize(
    "element", [[], [batch()], 7, "batch", None], ids=["empty-array", "array", "int", "str", "null"]
)
def test_a_bulk_element_that_is_not_a_batch_object_is_400_and_stores_nothing(tmp_path: Path, element: Any) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/bulkevents", [batch("a@example.com"), element], basic())
        assert app.jobs() == []
    assert (answer.status, answer.error["pointer"]) == (400, "/1")


def test_a_firehose_message_inside_a_bulk_is_400(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/bulkevents", [batch(), firehose_events()], basic())
        assert app.jobs() == []
    assert (answer.status, answer.error["pointer"]) == (400, "/1/type")


@pytest.mark.parametrize("body", [batch(), "text", 3], ids=["object", "string", "number"])
def test_a_bulk_that_is_not_an_array_is_400(tmp_path: Path, body: Any) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/bulkevents", body, basic())
    assert (answer.status, answer.error["pointer"]) == (400, "")


def test_a_bulk_needs_credentials_like_single_batches(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        assert app.post("/v2/bulkevents", [batch()]).status == 401
        assert app.post("/v2/bulkevents", [batch()], basic(ACME_KEY, "nope")).status == 403
        assert app.jobs() == []


def test_a_full_backlog_refuses_a_bulk_with_429(tmp_path: Path) -> None:
    with LiveApp(tmp_path, high_water_mark=1) as app:
        assert app.post("/v2/bulkevents", [batch("a@example.com", [event(message_id="m1")])], basic()).status == 202
        answer = app.post("/v2/bulkevents", [batch("b@example.com", [event(message_id="m2")])], basic())
    assert (answer.status, "retry-after" in answer.headers) == (429, True)
