"""Rules 20 and 23: client identifier updates are ignored; profile import answers 201/200."""

from __future__ import annotations

from .helpers import (
    assert_error,
    client,
    event_body,
    exchange,
    import_body,
    one,
    profile_body,
    server,
)

JANE = {"email": "jane@example.com", "external_id": "mp-1"}


def test_a_client_profile_is_answered_202_with_an_empty_body_and_stored() -> None:
    resp, state = one(client("/client/profiles", profile_body(email="jane@example.com", first_name="Jane")))
    assert resp.status == 202 and resp.body == b""
    profile = state["profiles"]["jane@example.com"]
    assert profile["email"] == "jane@example.com"
    assert profile["attributes"] == {"first_name": "Jane"}


def test_a_client_profile_needs_an_identifier() -> None:
    resp, state = one(client("/client/profiles", profile_body(first_name="Jane")))
    assert_error(resp, 400, pointer="/data")
    assert state["profiles"] == {}


def test_a_client_event_cannot_change_an_existing_profiles_email() -> None:
    responses, state = exchange(
        client("/client/events", event_body(profile=JANE)),
        client(
            "/client/events", event_body(profile={"email": "new@example.com", "external_id": "mp-1"}, unique_id="2")
        ),
    )
    assert [r.status for r in responses] == [202, 202]
    assert list(state["profiles"]) == ["jane@example.com"]
    assert state["profiles"]["jane@example.com"]["email"] == "jane@example.com"


def test_a_client_profile_update_cannot_change_an_existing_identifier() -> None:
    responses, state = exchange(
        client("/client/profiles", profile_body(**JANE)),
        client("/client/profiles", profile_body(email="new@example.com", external_id="mp-1", first_name="J")),
    )
    assert [r.status for r in responses] == [202, 202]
    profile = state["profiles"]["jane@example.com"]
    assert profile["external_id"] == "mp-1"
    assert profile["attributes"]["first_name"] == "J"


def test_a_client_call_may_add_a_missing_identifier() -> None:
    _, state = exchange(
        client("/client/profiles", profile_body(email="jane@example.com")),
        client("/client/profiles", profile_body(email="jane@example.com", external_id="mp-1")),
    )
    assert state["profiles"]["jane@example.com"]["external_id"] == "mp-1"


def test_a_server_event_may_change_an_existing_identifier() -> None:
    _, state = exchange(
        client("/client/events", event_body(profile=JANE)),
        server("/api/events", event_body(profile={"email": "new@example.com", "external_id": "mp-1"}, unique_id="2")),
    )
    assert list(state["profiles"]) == ["new@example.com"]


def test_profile_import_creates_with_201_and_a_profile_body() -> None:
    resp, state = one(server("/api/profile-import", import_body(email="jane@example.com", first_name="Jane")))
    assert resp.status == 201
    assert resp.headers["Content-Type"].startswith("application/vnd.api+json")
    data = resp.json()["data"]
    assert data["type"] == "profile"
    assert data["id"] == state["profiles"]["jane@example.com"]["id"]
    assert data["attributes"]["email"] == "jane@example.com"
    assert data["attributes"]["first_name"] == "Jane"


def test_profile_import_updates_with_200() -> None:
    responses, state = exchange(
        server("/api/profile-import", import_body(email="jane@example.com", first_name="Jane")),
        server("/api/profile-import", import_body(email="jane@example.com", first_name="Janet")),
    )
    assert [r.status for r in responses] == [201, 200]
    assert responses[1].json()["data"]["attributes"]["first_name"] == "Janet"
    assert len(state["profiles"]) == 1


def test_profile_import_clears_an_attribute_set_to_null() -> None:
    responses, _ = exchange(
        server("/api/profile-import", import_body(email="jane@example.com", title="Buyer")),
        server("/api/profile-import", import_body(email="jane@example.com", title=None)),
    )
    assert "title" not in responses[1].json()["data"]["attributes"]


def test_profile_import_with_identifiers_of_two_profiles_is_409() -> None:
    responses, _ = exchange(
        server("/api/profile-import", import_body(email="jane@example.com")),
        server("/api/profile-import", import_body(external_id="mp-9")),
        server("/api/profile-import", import_body(email="jane@example.com", external_id="mp-9")),
    )
    error = assert_error(responses[2], 409, "duplicate_profile")
    assert error["meta"]["duplicate_profile_id"] == responses[1].json()["data"]["id"]


def test_profile_import_with_an_unknown_profile_id_is_404() -> None:
    body = import_body(email="jane@example.com")
    body["data"]["id"] = "01UNKNOWN"
    resp, _ = one(server("/api/profile-import", body))
    assert_error(resp, 404, "not_found")
