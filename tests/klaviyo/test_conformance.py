"""Every request shape the mapper produces validates against Klaviyo's official OpenAPI spec."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec
import pytest
from jsonschema import FormatChecker  # type: ignore[import-untyped]
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from mparticle_klaviyo.delivery.payloads import (
    BulkEventBuilder,
    bulk_unsubscription_request,
    client_event_request,
    deletion_requests,
    subscription_request,
)
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.mapping.result import MappedEvent, Subscription
from mparticle_klaviyo.mapping.settings import MappingSettings
from tests.mapping.builders import EMAIL, PHONE, batch_doc, commerce, custom, ev, gdpr, map_doc, metric, product

PROFILE_ATTRIBUTES = {
    "$FirstName": "Jane",
    "$LastName": "Doe",
    "$City": "Boston",
    "$State": "MA",
    "$Country": "US",
    "$Zip": "02110",
    "$Address": "1 Main St",
    "$address2": "Apt 2",
    "$latitude": 42.36,
    "$longitude": "-71.06",
    "$timezone": "America/New_York",
    "$ip": "127.0.0.1",
    "$image": "https://example.com/jane.png",
    "$organization": "Acme",
    "$title": "Buyer",
    "$external_id": "cust-42",
    "plan": "pro",
    "tags": ["a", "b"],
}
IDENTITIES = {"email": EMAIL, "mobile_number": PHONE}
PRODUCTS = [product("S1", 5.0, 2, brand="Acme", category="Socks", variant="Red", position=1), product("S2", 1.5)]
PRODUCT_ACTIONS = [
    "add_to_cart",
    "remove_from_cart",
    "checkout",
    "checkout_option",
    "click",
    "view_detail",
    "purchase",
    "refund",
    "add_to_wishlist",
    "remove_from_wish_list",
]
EVENTS: dict[str, dict[str, Any]] = {
    "session_start": ev("session_start"),
    "session_end": ev("session_end", session_duration_ms=6000),
    "custom_event": custom("Signed Up", custom_attributes={"$value": "9.99", "$event_id": "e-1", "nested": {"a": [1]}}),
    "screen_view": ev("screen_view", screen_name="Home", custom_attributes={"section": "top"}),
    **{
        f"ast_{name}": ev("application_state_transition", application_transition_type=kind, is_first_run=first)
        for name, kind, first in [
            ("install", "application_initialized", True),
            ("initialize", "application_initialized", False),
            ("foreground", "application_foreground", None),
            ("background", "application_background", None),
            ("exit", "application_exit", None),
        ]
    },
    "ast_upgrade": ev(
        "application_state_transition", application_transition_type="application_initialized", is_upgrade=True
    ),
    **{
        f"commerce_{action}": commerce(
            product_action={
                "action": action,
                "transaction_id": "T-1",
                "affiliation": "store",
                "total_amount": 11.5,
                "tax_amount": 1,
                "shipping_amount": 0,
                "coupon_code": "C",
                "products": PRODUCTS,
            },
            currency_code="USD",
            custom_attributes={"channel": "app"},
        )
        for action in PRODUCT_ACTIONS
    },
    "commerce_promotion_view": commerce(promotion_action={"action": "view", "promotions": [{"id": "P1", "name": "N"}]}),
    "commerce_promotion_click": commerce(
        promotion_action={"action": "click", "promotions": [{"id": "P1", "position": 1}]}
    ),
    "commerce_impression": commerce(product_impressions=[{"product_impression_list": "L", "products": PRODUCTS}]),
}


@lru_cache(maxsize=2)
def _spec(path: Path) -> tuple[dict[str, Any], Registry[Any]]:
    spec = json.loads(path.read_bytes())
    registry: Registry[Any] = Registry().with_resource(
        "urn:klaviyo", Resource.from_contents(spec, default_specification=DRAFT4)
    )
    return spec, registry


def errors(spec_path: Path, request: KlaviyoRequest) -> list[str]:
    """Schema errors of a request body against the official request schema of its path."""
    spec, registry = _spec(spec_path)
    media = spec["paths"][request.path]["post"]["requestBody"]["content"]["application/vnd.api+json"]
    validator = OAS30Validator(
        {"$ref": "urn:klaviyo" + media["schema"]["$ref"]}, registry=registry, format_checker=FormatChecker()
    )
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(request.body)]


def mapped_events(name: str) -> list[MappedEvent]:
    doc = batch_doc(EVENTS[name], identities=IDENTITIES, attributes=PROFILE_ATTRIBUTES)
    result = map_doc(doc)
    assert result.notices == []
    assert result.events
    return result.events


def test_every_supported_event_type_and_commerce_variant_is_covered() -> None:
    names = {metric(e) for name in EVENTS for e in mapped_events(name)}
    assert names == {
        "Session Start",
        "Session End",
        "Signed Up",
        "Screen View",
        "Application Installed",
        "Application Initialized",
        "Application Upgraded",
        "Application Foreground",
        "Application Background",
        "Application Exit",
        "Added to Cart",
        "Removed from Cart",
        "Started Checkout",
        "Checkout Option",
        "Clicked Product",
        "Viewed Product",
        "Placed Order",
        "Ordered Product",
        "Refunded Order",
        "Added to Wishlist",
        "Removed from Wishlist",
        "Viewed Promotion",
        "Clicked Promotion",
        "Viewed Impression",
    }


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_client_events_conform_to_the_official_schema(openapi_spec_path: Path, name: str) -> None:
    for event in mapped_events(name):
        assert errors(openapi_spec_path, client_event_request(event)) == []


def test_a_phone_only_client_event_conforms(openapi_spec_path: Path) -> None:
    [event] = map_doc(batch_doc(custom("A"), identities={"mobile_number": PHONE})).events
    assert errors(openapi_spec_path, client_event_request(event)) == []


def test_a_client_event_without_a_time_conforms(openapi_spec_path: Path) -> None:
    [event] = map_doc(batch_doc({"event_type": "session_start", "data": {}})).events
    assert errors(openapi_spec_path, client_event_request(event)) == []


@pytest.mark.parametrize(
    "channels", [("email",), ("sms",), ("push",), ("email", "sms", "push")], ids=lambda c: "+".join(c)
)
def test_client_subscriptions_conform(openapi_spec_path: Path, channels: tuple[str, ...]) -> None:
    request = subscription_request(Subscription(channels=channels, email=EMAIL, phone_number=PHONE), "Y6nRLr", False)
    assert request.path == "/client/subscriptions"
    assert errors(openapi_spec_path, request) == []


@pytest.mark.parametrize("list_id", ["Y6nRLr", None])
def test_server_subscription_jobs_conform(openapi_spec_path: Path, list_id: str | None) -> None:
    request = subscription_request(
        Subscription(channels=("email", "sms"), email=EMAIL, phone_number=PHONE), list_id, True
    )
    assert request.path == "/api/profile-subscription-bulk-create-jobs"
    assert errors(openapi_spec_path, request) == []


def test_subscriptions_mapped_from_consent_conform(openapi_spec_path: Path) -> None:
    settings = MappingSettings(consent_mapping={"e": "email", "s": "sms", "m": "mobile"}, list_id="Y6nRLr")
    result = map_doc(batch_doc(custom(), identities=IDENTITIES, consent=gdpr(e=True, s=True, m=True)), settings)
    [subscription] = result.subscriptions
    for server_mode in (False, True):
        assert errors(openapi_spec_path, subscription_request(subscription, "Y6nRLr", server_mode)) == []


@pytest.mark.parametrize("list_id", ["Y6nRLr", None])
def test_unsubscription_jobs_mapped_from_revoked_consent_conform(openapi_spec_path: Path, list_id: str | None) -> None:
    settings = MappingSettings(
        consent_mapping={"e": "email", "s": "sms"}, list_id=list_id, server_mode=True, consent_removal=True
    )
    result = map_doc(batch_doc(custom(), identities=IDENTITIES, consent=gdpr(e=False, s=False)), settings)
    request = bulk_unsubscription_request(result.unsubscriptions * 2, list_id)
    assert request.path == "/api/profile-subscription-bulk-delete-jobs"
    assert errors(openapi_spec_path, request) == []


def test_deletion_jobs_by_email_and_by_phone_conform(openapi_spec_path: Path) -> None:
    requests = deletion_requests(EMAIL, PHONE)
    assert [r.path for r in requests] == ["/api/data-privacy-deletion-jobs"] * 2
    assert [errors(openapi_spec_path, r) for r in requests] == [[], []]


def test_a_bulk_event_job_of_every_shape_and_two_profiles_conforms(openapi_spec_path: Path) -> None:
    builder = BulkEventBuilder()
    requests: list[KlaviyoRequest] = []
    everything = [e for name in sorted(EVENTS) for e in mapped_events(name)]
    other_profile = map_doc(batch_doc(custom("B"), identities={"mobile_number": PHONE})).events
    for event in [*everything, *other_profile]:
        requests.extend(builder.add(event))
    requests.extend(builder.flush())
    [request] = requests
    assert request.path == "/api/event-bulk-create-jobs"
    assert len(request.body["data"]["attributes"]["events-bulk-create"]["data"]) == 2
    assert errors(openapi_spec_path, request) == []


def test_the_validator_catches_a_broken_body(openapi_spec_path: Path) -> None:
    [event] = map_doc(batch_doc(custom("A"))).events
    # A copy to break: mapped events share objects (one metric object per name) and are read-only.
    sent = client_event_request(event)
    request = msgspec.structs.replace(sent, body=copy.deepcopy(sent.body))
    request.body["data"]["attributes"]["value"] = "9.99"
    del request.body["data"]["attributes"]["metric"]["data"]["attributes"]["name"]
    found = errors(openapi_spec_path, request)
    assert len(found) == 2
    assert any("'9.99' is not of type 'number'" in e for e in found)
    assert any("'name' is a required property" in e for e in found)


def test_the_validator_catches_a_client_subscription_without_a_list(openapi_spec_path: Path) -> None:
    request = subscription_request(Subscription(channels=("email",), email=EMAIL), None, False)
    assert errors(openapi_spec_path, request) == ["data: 'relationships' is a required property"]
