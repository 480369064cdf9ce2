"""Cross-check: bodies the official OpenAPI schema accepts, the emulator accepts; and some it
rejects, the emulator rejects too. The emulator is stricter (unknown keys), shown last."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest
from openapi_schema_validator import OAS30Validator, oas30_format_checker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from mparticle_klaviyo.klaviyo.emulator.operations import OPERATIONS

from .helpers import (
    Req,
    bulk_entry,
    bulk_event,
    bulk_subscription_body,
    client,
    client_bulk_body,
    deletion_body,
    event_body,
    import_body,
    one,
    profile_body,
    server,
    server_bulk_body,
    subscriber,
    subscription_body,
    unsubscriber,
    unsubscription_body,
    with_value,
    without,
)

FULL_PROFILE = {
    "email": "jane@example.com",
    "phone_number": "+15005550006",
    "external_id": "mp-1234567890",
    "first_name": "Jane",
    "last_name": "Doe",
    "image": "https://example.com/jane.png",
    "location": {"city": "Boston", "region": "MA", "country": "United States", "zip": "02110", "latitude": 42.36},
    "properties": {"loyalty_tier": "gold"},
}
REVOKED = {"consent": "UNSUBSCRIBED"}
REVOKE_ALL = {
    "email": {"marketing": REVOKED, "open_tracking": REVOKED},
    "sms": {"marketing": REVOKED, "transactional": REVOKED},
    "whatsapp": {"marketing": REVOKED, "transactional": REVOKED, "conversational": REVOKED},
    "push": {"marketing": REVOKED, "tokens": [{"token": "f00dcafe", "platform": "android", "vendor": "fcm"}]},
}
HISTORICAL = {"email": {"marketing": {"consent": "SUBSCRIBED", "consented_at": "2026-04-30T09:00:00+00:00"}}}


@functools.cache
def _spec(path: Path) -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(path.read_text())
    return spec


def _validator(spec_path: Path, api_path: str) -> OAS30Validator:
    spec = _spec(spec_path)
    registry: Registry[Any] = Registry().with_resource(
        "urn:klaviyo", Resource.from_contents(spec, default_specification=DRAFT4)
    )
    media = spec["paths"][api_path]["post"]["requestBody"]["content"]["application/vnd.api+json"]
    return OAS30Validator(
        {"$ref": "urn:klaviyo" + media["schema"]["$ref"]}, registry=registry, format_checker=oas30_format_checker
    )


def _spec_errors(spec_path: Path, api_path: str, body: Any) -> list[str]:
    return [error.message for error in _validator(spec_path, api_path).iter_errors(body)]


def _request(api_path: str, body: Any) -> Req:
    return client(api_path, body) if api_path.startswith("/client/") else server(api_path, body)


VALID: list[tuple[str, Any]] = [
    ("/client/events", event_body(profile=FULL_PROFILE)),
    ("/api/events", event_body(properties={}, value=20)),
    ("/client/profiles", profile_body(**FULL_PROFILE, organization="Acme", title="Buyer")),
    ("/client/subscriptions", subscription_body(email="jane@example.com", phone_number="+15005550006")),
    ("/client/event-bulk-create", client_bulk_body([bulk_event("e1"), bulk_event("e2", value=3)])),
    ("/api/event-bulk-create-jobs", server_bulk_body(bulk_entry({"email": "jane@example.com"}, [bulk_event("e1")]))),
    ("/api/profile-subscription-bulk-create-jobs", bulk_subscription_body([subscriber(HISTORICAL)], True)),
    ("/api/profile-import", import_body(**FULL_PROFILE)),
    (
        "/api/profile-subscription-bulk-delete-jobs",
        unsubscription_body(
            [
                unsubscriber(REVOKE_ALL, email="jane@example.com", phone_number="+15005550006"),
                unsubscriber(email="joe@example.com"),
            ]
        ),
    ),
    ("/api/data-privacy-deletion-jobs", deletion_body(email="jane@example.com")),
    ("/api/data-privacy-deletion-jobs", deletion_body("01GDDKASAP8TKDDA2GRZDSVP4H")),
]

INVALID: list[tuple[str, Any]] = [
    ("/client/events", with_value(event_body(), "data/type", "events")),
    ("/client/events", without(event_body(), "data/attributes/properties")),
    ("/client/events", without(event_body(), "data/attributes/metric/data/attributes/name")),
    ("/client/events", event_body(value="9.99")),
    ("/client/events", event_body(time="2026-05-01")),
    ("/api/events", event_body(time=1714566896)),
    ("/client/subscriptions", subscription_body({"email": {"marketing": {"consent": "UNSUBSCRIBED"}}})),
    ("/client/subscriptions", subscription_body(list_id=None)),
    (
        "/client/event-bulk-create",
        with_value(client_bulk_body([bulk_event("e1")]), "data/attributes/events/data/0/type", "evt"),
    ),
    ("/api/profile-subscription-bulk-create-jobs", bulk_subscription_body([{"type": "profile", "attributes": {}}])),
    ("/api/profile-import", with_value(import_body(email="jane@example.com"), "data/type", "profiles")),
    ("/client/profiles", with_value(profile_body(), "data/type", "profiles")),
    (
        "/api/event-bulk-create-jobs",
        without(
            server_bulk_body(bulk_entry({"email": "jane@example.com"}, [bulk_event("e1")])),
            "data/attributes/events-bulk-create/data/0/attributes/events",
        ),
    ),
    (
        "/api/profile-subscription-bulk-delete-jobs",
        unsubscription_body([unsubscriber({"email": {"marketing": {"consent": "SUBSCRIBED"}}})]),
    ),
    ("/api/profile-subscription-bulk-delete-jobs", unsubscription_body([{"type": "profile", "attributes": {}}])),
    (
        "/api/profile-subscription-bulk-delete-jobs",
        with_value(unsubscription_body([unsubscriber()]), "data/type", "profile-subscription-bulk-create-job"),
    ),
    ("/api/data-privacy-deletion-jobs", without(deletion_body(email="jane@example.com"), "data/attributes/profile")),
    ("/api/data-privacy-deletion-jobs", with_value(deletion_body("01GDDKASAP8TKDDA2GRZDSVP4H"), "data/type", "job")),
]


@pytest.mark.parametrize(("api_path", "body"), VALID, ids=[path for path, _ in VALID])
def test_a_body_valid_under_the_official_schema_is_accepted(openapi_spec_path: Path, api_path: str, body: Any) -> None:
    assert _spec_errors(openapi_spec_path, api_path, body) == []
    resp, _ = one(_request(api_path, body))
    assert resp.status in (200, 201, 202), resp.body[:400]


@pytest.mark.parametrize(("api_path", "body"), INVALID, ids=[path for path, _ in INVALID])
def test_a_body_invalid_under_the_official_schema_is_rejected(
    openapi_spec_path: Path, api_path: str, body: Any
) -> None:
    assert _spec_errors(openapi_spec_path, api_path, body) != []
    resp, state = one(_request(api_path, body))
    assert resp.status == 400
    assert state["events"] == [] and state["subscriptions"] == []
    assert state["unsubscriptions"] == [] and state["deletions"] == []


def test_every_emulated_endpoint_is_cross_checked_both_ways() -> None:
    assert {path for path, _ in VALID} == set(OPERATIONS)
    assert {path for path, _ in INVALID} == set(OPERATIONS)


def test_the_emulator_is_stricter_than_the_schema_about_unknown_keys(openapi_spec_path: Path) -> None:
    body = event_body(profile={"$email": "jane@example.com", "email": "jane@example.com"})
    assert _spec_errors(openapi_spec_path, "/client/events", body) == []
    resp, _ = one(client("/client/events", body))
    assert resp.status == 400
