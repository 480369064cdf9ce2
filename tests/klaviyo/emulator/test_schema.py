"""Rules 8-10: schema types, unknown fields (outside free-form objects) and JSON:API types."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import (
    assert_error,
    bulk_entry,
    bulk_event,
    bulk_subscription_body,
    client,
    client_bulk_body,
    event_body,
    one,
    profile_body,
    server,
    server_bulk_body,
    subscriber,
    subscription_body,
    with_value,
    without,
)

PROFILE_ATTRS = "/data/attributes/profile/data/attributes"


def _event_error(body: Any) -> dict[str, Any]:
    resp, state = one(client("/client/events", body))
    assert state["events"] == []
    return assert_error(resp, 400)


@pytest.mark.parametrize(
    ("path", "pointer"),
    [
        ("data/attributes/profile/data/attributes/last_nam", f"{PROFILE_ATTRS}/last_nam"),
        ("data/attributes/profile/data/attributes/location/street", f"{PROFILE_ATTRS}/location/street"),
        ("data/attributes/metric/data/attributes/category", "/data/attributes/metric/data/attributes/category"),
        ("data/attributes/event_id", "/data/attributes/event_id"),
        ("data/extra", "/data/extra"),
        ("meta", "/meta"),
    ],
)
def test_an_unknown_field_is_400_with_klaviyos_message_and_a_pointer(path: str, pointer: str) -> None:
    error = _event_error(with_value(event_body(), path, "x"))
    key = path.rsplit("/", 1)[-1]
    assert error["source"] == {"pointer": pointer}
    assert error["detail"].startswith(f"'{key}' is not a valid field for the resource '")


def test_the_unknown_field_message_names_the_resource_it_was_sent_on() -> None:
    error = _event_error(with_value(event_body(), "data/attributes/metric/data/attributes/category", "x"))
    assert error["detail"] == "'category' is not a valid field for the resource 'metric'."
    error = _event_error(with_value(event_body(), "data/attributes/profile/data/attributes/last_nam", "x"))
    assert error["detail"] == "'last_nam' is not a valid field for the resource 'profile'."


def test_a_legacy_dollar_email_key_in_profile_attributes_is_rejected() -> None:
    error = _event_error(event_body(profile={"$email": "jane@example.com"}))
    assert error["source"] == {"pointer": f"{PROFILE_ATTRS}/$email"}


def test_a_key_with_a_slash_is_escaped_in_the_pointer() -> None:
    error = _event_error(with_value(event_body(), "data/attributes/a~b", 1))
    assert error["source"] == {"pointer": "/data/attributes/a~0b"}


def test_any_key_is_allowed_inside_event_and_profile_properties() -> None:
    body = event_body(properties={"$extra": {"anything": [1, {"deep": True}]}, "$value": 3, "x y": None})
    body = with_value(body, "data/attributes/profile/data/attributes/properties", {"$consent": ["email"], "a": {}})
    resp, state = one(client("/client/events", body))
    assert resp.status == 202
    assert state["events"][0]["properties"]["$extra"] == {"anything": [1, {"deep": True}]}


def test_any_key_is_allowed_inside_meta_patch_properties() -> None:
    body = profile_body(email="jane@example.com")
    body["data"]["meta"] = {"patch_properties": {"append": {"skus": "1"}, "unappend": {"x": 2}, "unset": ["a"]}}
    resp, _ = one(client("/client/profiles", body))
    assert resp.status == 202


def test_an_unknown_key_inside_meta_is_rejected() -> None:
    body = profile_body(email="jane@example.com")
    body["data"]["meta"] = {"patch_props": {}}
    resp, _ = one(client("/client/profiles", body))
    assert_error(resp, 400, pointer="/data/meta/patch_props")


def test_anonymous_id_is_not_a_field_of_profile_import() -> None:
    resp, _ = one(server("/api/profile-import", profile_body(email="jane@example.com", anonymous_id="a1")))
    assert_error(resp, 400, pointer="/data/attributes/anonymous_id")


@pytest.mark.parametrize(
    ("path", "bad_type"),
    [
        ("data/type", "events"),
        ("data/attributes/metric/data/type", "metrics"),
        ("data/attributes/profile/data/type", "Profile"),
    ],
)
def test_a_wrong_json_api_type_is_400(path: str, bad_type: str) -> None:
    error = _event_error(with_value(event_body(), path, bad_type))
    assert error["source"] == {"pointer": "/" + path}


def test_a_list_relationship_with_a_wrong_type_is_400() -> None:
    body = with_value(subscription_body(), "data/relationships/list/data/type", "lists")
    resp, _ = one(client("/client/subscriptions", body))
    assert_error(resp, 400, pointer="/data/relationships/list/data/type")


@pytest.mark.parametrize(
    ("req_path", "body", "type_path"),
    [
        ("/client/profiles", profile_body(), "data/type"),
        ("/client/subscriptions", subscription_body(), "data/type"),
        ("/client/event-bulk-create", client_bulk_body([bulk_event("e1")]), "data/type"),
        ("/client/event-bulk-create", client_bulk_body([bulk_event("e1")]), "data/attributes/events/data/0/type"),
    ],
)
def test_every_operation_checks_its_json_api_type(req_path: str, body: Any, type_path: str) -> None:
    resp, _ = one(client(req_path, with_value(body, type_path, "event-bulk-create-job")))
    assert_error(resp, 400, pointer="/" + type_path)


def test_the_server_bulk_types_are_checked() -> None:
    body = server_bulk_body(bulk_entry({"email": "jane@example.com"}, [bulk_event("e1")]))
    resp, _ = one(server("/api/event-bulk-create-jobs", with_value(body, "data/type", "event-bulk-create")))
    assert_error(resp, 400, pointer="/data/type")
    bad = bulk_subscription_body([subscriber()])
    resp, _ = one(server("/api/profile-subscription-bulk-create-jobs", with_value(bad, "data/type", "subscription")))
    assert_error(resp, 400, pointer="/data/type")


@pytest.mark.parametrize(
    "missing",
    [
        "data",
        "data/type",
        "data/attributes",
        "data/attributes/properties",
        "data/attributes/metric",
        "data/attributes/metric/data",
        "data/attributes/metric/data/attributes/name",
        "data/attributes/profile",
        "data/attributes/profile/data/attributes",
    ],
)
def test_a_missing_required_member_is_400_pointing_at_it(missing: str) -> None:
    error = _event_error(without(event_body(), missing))
    assert error["source"] == {"pointer": "/" + missing}
    assert "is a required field for the resource" in error["detail"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("data/attributes/value", "9.99"),
        ("data/attributes/value", True),
        ("data/attributes/time", 1714566896),
        ("data/attributes/time", "2026-05-01"),
        ("data/attributes/time", "2026-05-01T12:34"),
        ("data/attributes/time", "2026-05-01T12:34:56+0000"),
        ("data/attributes/time", "yesterday"),
        ("data/attributes/unique_id", 42),
        ("data/attributes/properties", []),
        ("data/attributes/properties", None),
        ("data/attributes/backfill", "false"),
        ("data/attributes/metric/data/attributes/name", None),
        ("data/attributes/metric/data/attributes/name", 7),
        ("data/attributes/profile/data/attributes/email", ["jane@example.com"]),
        ("data/attributes/profile/data/attributes/location", "Boston"),
        ("data/attributes/profile/data/attributes/location/latitude", [1]),
        ("data/attributes/profile/data/id", 5),
    ],
)
def test_a_value_of_the_wrong_type_is_400_pointing_at_it(path: str, value: Any) -> None:
    error = _event_error(with_value(event_body(), path, value))
    assert error["source"] == {"pointer": "/" + path}


def test_a_profile_not_wrapped_in_data_is_the_invalid_payload_error() -> None:
    body = with_value(event_body(), "data/attributes/profile", {"data": "jane@example.com"})
    error = _event_error(body)
    assert error["detail"] == "The payload provided in the request is invalid."
    assert error["source"] == {"pointer": "/data/attributes/profile/data"}


def test_nullable_attributes_accept_null() -> None:
    body = event_body(value=None, value_currency=None, time=None, backfill=None)
    body = with_value(body, f"{PROFILE_ATTRS[1:]}/first_name", None)
    body = with_value(body, f"{PROFILE_ATTRS[1:]}/location", {"latitude": 42.36, "longitude": "-71.06", "zip": None})
    resp, _ = one(client("/client/events", body))
    assert resp.status == 202


META = {"patch_properties": {"append": {"skus": "92538"}}}


def test_at_2026_07_15_an_event_profiles_meta_sits_inside_its_attributes() -> None:
    inside = with_value(event_body(), f"{PROFILE_ATTRS[1:]}/meta", META)
    beside = with_value(event_body(), "data/attributes/profile/data/meta", META)
    assert one(client("/client/events", inside))[0].status == 202
    assert_error(one(client("/client/events", beside))[0], 400, pointer="/data/attributes/profile/data/meta")


def test_at_2026_10_15_an_event_profiles_meta_sits_beside_its_attributes() -> None:
    inside = with_value(event_body(), f"{PROFILE_ATTRS[1:]}/meta", META)
    beside = with_value(event_body(), "data/attributes/profile/data/meta", META)
    assert one(client("/client/events", beside, revision="2026-10-15"))[0].status == 202
    resp, _ = one(client("/client/events", inside, revision="2026-10-15"))
    assert_error(resp, 400, pointer=f"{PROFILE_ATTRS}/meta")
