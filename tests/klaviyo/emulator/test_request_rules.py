"""Rules 3-5: the revision header, the content type, and the body's encoding and size."""

from __future__ import annotations

import pytest

from .helpers import (
    Req,
    assert_error,
    base_headers,
    client,
    config,
    encode,
    event_body,
    import_body,
    one,
    server,
)

INVALID_PAYLOAD = "The payload provided in the request is invalid."


def _without_revision() -> Req:
    req = client("/client/events", event_body())
    del req.headers["revision"]
    return req


def test_a_missing_revision_header_is_400_naming_the_parameter() -> None:
    resp, state = one(_without_revision())
    assert_error(resp, 400, parameter="revision")
    assert state["events"] == []


@pytest.mark.parametrize("revision", ["2026-7-15", "20260715", "2026-07-15.beta", "latest", "2026-02-30"])
def test_a_malformed_revision_is_400(revision: str) -> None:
    resp, _ = one(client("/client/events", event_body(), revision=revision))
    assert_error(resp, 400, parameter="revision")


def test_a_future_revision_is_400_with_klaviyos_detail() -> None:
    resp, _ = one(client("/client/events", event_body(), revision="2027-01-15"))
    assert_error(resp, 400, parameter="revision", detail="unable to specify a future revision date")


@pytest.mark.parametrize("revision", ["2025-05-15", "2024-10-15", "2023-07-15"])
def test_a_well_formed_revision_not_in_the_table_is_400(revision: str) -> None:
    resp, _ = one(client("/client/events", event_body(), revision=revision))
    assert_error(resp, 400, parameter="revision")


@pytest.mark.parametrize("revision", ["2025-01-15", "2025-07-15", "2026-01-15", "2026-07-15", "2026-10-15"])
def test_every_revision_of_the_table_is_accepted_by_default(revision: str) -> None:
    resp, _ = one(client("/client/events", event_body(), revision=revision))
    assert resp.status == 202


def test_the_known_revisions_are_configurable() -> None:
    cfg = config(revisions=frozenset({"2025-04-15", "2026-07-15.pre"}))
    resp, _ = one(client("/client/events", event_body(), revision="2026-07-15.pre"), cfg)
    assert resp.status == 202


@pytest.mark.parametrize(
    ("path", "revision"),
    [
        ("/api/event-bulk-create-jobs", "2024-02-15"),
        ("/api/profile-import", "2023-12-15"),
        ("/api/events", "2022-01-15"),
        ("/api/profile-subscription-bulk-delete-jobs", "2023-06-15"),
        ("/api/data-privacy-deletion-jobs", "2022-10-17"),
    ],
)
def test_an_endpoint_newer_than_the_revision_sent_is_404_no_valid_revisions(path: str, revision: str) -> None:
    cfg = config(revisions=frozenset({revision}))
    body: dict[str, object] = {"data": {}}
    resp, _ = one(server(path, body, revision=revision), cfg)
    assert_error(resp, 404, "not_found", detail="No valid revisions found for method")


@pytest.mark.parametrize(
    ("path", "revision"),
    [
        ("/api/event-bulk-create-jobs", "2024-05-15"),
        ("/api/profile-subscription-bulk-delete-jobs", "2023-07-15"),
        ("/api/data-privacy-deletion-jobs", "2023-01-24"),
    ],
)
def test_an_endpoint_is_served_from_its_first_revision_on(path: str, revision: str) -> None:
    cfg = config(revisions=frozenset({revision}))
    body: dict[str, object] = {"data": {}}
    resp, _ = one(server(path, body, revision=revision), cfg)
    assert_error(resp, 400, pointer="/data/type")  # served: the body is judged


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "application/xml", "multipart/form-data"]
)
def test_a_non_json_content_type_is_415(content_type: str) -> None:
    resp, state = one(client("/client/events", event_body(), **{"Content-Type": content_type}))
    assert_error(resp, 415, "unsupported_media_type")
    assert state["events"] == []


def test_a_missing_content_type_is_415() -> None:
    req = client("/client/events", event_body())
    del req.headers["Content-Type"]
    resp, _ = one(req)
    assert_error(resp, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type", ["application/json", "application/vnd.api+json; charset=utf-8", "Application/JSON;charset=UTF-8"]
)
def test_json_content_types_with_parameters_are_accepted(content_type: str) -> None:
    resp, _ = one(client("/client/events", event_body(), **{"Content-Type": content_type}))
    assert resp.status == 202


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b'{"data": "\xff"}', b"[]", b'"text"', b"null", b'{"data": {}} trailing']
)
def test_a_body_that_is_not_a_utf8_json_object_is_400_invalid_payload(raw: bytes) -> None:
    resp, _ = one(Req("POST", "/client/events?company_id=DEMO01", raw, base_headers()))
    assert_error(resp, 400, pointer="/data", detail=INVALID_PAYLOAD)


def test_an_event_body_over_5_mb_is_413() -> None:
    body = event_body()
    body["data"]["attributes"]["properties"] = {f"k{i}": "x" * 90_000 for i in range(60)}
    resp, state = one(client("/client/events", body))
    assert len(encode(body)) > 5 * 1024 * 1024
    assert_error(resp, 413, "payload_too_large")
    assert state["events"] == []


def test_a_profile_import_body_over_100_kb_is_413() -> None:
    body = import_body(email="jane@example.com", properties={"notes": "x" * 110_000})
    resp, _ = one(server("/api/profile-import", body))
    assert_error(resp, 413, "payload_too_large")


def test_a_profile_import_body_under_100_kb_is_accepted() -> None:
    body = import_body(email="jane@example.com", properties={"notes": "x" * 90_000})
    resp, _ = one(server("/api/profile-import", body))
    assert resp.status == 201
