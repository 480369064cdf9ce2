"""Batches built and serialized by mParticle's own Python SDK decode and map to the right requests."""

from __future__ import annotations

import json
from typing import Any

import pytest

import mparticle
from mparticle_klaviyo.delivery.payloads import client_event_request, subscription_request
from mparticle_klaviyo.mapping.batch import map_batch
from mparticle_klaviyo.mapping.result import MappedBatch, Subscription
from mparticle_klaviyo.mapping.settings import MappingSettings
from mparticle_klaviyo.mparticle.decode import decode_document
from mparticle_klaviyo.mparticle.model import UserBatch
from tests.mapping.builders import NOW_MS, T0, drops, metrics

SETTINGS = MappingSettings(consent_mapping={"email_marketing": "email"}, list_id="Y6nRLr")


def serialize(batch: Any) -> bytes:
    sanitized = mparticle.ApiClient(configuration=mparticle.Configuration()).sanitize_for_serialization(batch)
    return json.dumps(sanitized).encode()


def sdk_batch(*events: Any, email: str | None = "jane@example.com", mobile: str | None = "+15555550100") -> Any:
    batch = mparticle.Batch()
    batch.environment = "development"
    batch.source_request_id = "sdk-req-1"
    batch.mpid = 1234567890123456789
    identities = mparticle.UserIdentities()
    identities.customerid = "cust-42"
    if email:
        identities.email = email
    if mobile:
        identities.mobile_number = mobile
    batch.user_identities = identities
    batch.user_attributes = {"$FirstName": "Jane", "$Country": "US", "plan": "pro"}
    device = mparticle.DeviceInformation()
    device.platform = "iOS"
    batch.device_info = device
    for n, event in enumerate(events):
        event.timestamp_unixtime_ms = T0 + n * 1000
    batch.events = list(events)
    return batch


def product(sku: str, price: float, quantity: int) -> Any:
    item = mparticle.Product()
    item.id, item.name, item.price, item.quantity = sku, f"Product {sku}", price, quantity
    item.total_product_amount = price * quantity
    return item


def decode(batch: Any) -> UserBatch:
    [decoded] = decode_document(serialize(batch))
    return decoded


def mapped(*events: Any) -> MappedBatch:
    return map_batch(decode(sdk_batch(*events)), SETTINGS, NOW_MS)


def app_event(name: str, **attributes: Any) -> Any:
    event = mparticle.AppEvent(name, "navigation")
    event.custom_attributes = attributes
    return event


def test_an_sdk_batch_decodes_with_its_identities_mpid_and_platform() -> None:
    batch = decode(sdk_batch(app_event("Clicked")))
    assert batch.identities == {"customer_id": "cust-42", "email": "jane@example.com", "mobile_number": "+15555550100"}
    assert (batch.mpid, batch.platform, batch.batch_key) == ("1234567890123456789", "ios", "sdk-req-1")


def test_an_sdk_custom_event_becomes_a_client_event_named_after_it() -> None:
    result = mapped(app_event("Clicked Banner", banner="spring", **{"$event_id": "evt-9", "$value": "3.5"}))
    request = client_event_request(result.events[0])
    assert (request.path, request.auth) == ("/client/events", "public")
    assert request.body == {
        "data": {
            "type": "event",
            "attributes": {
                "properties": {"banner": "spring"},
                "metric": {"data": {"type": "metric", "attributes": {"name": "Clicked Banner"}}},
                "unique_id": "evt-9",
                "time": "2023-11-14T22:13:20.000+00:00",
                "value": 3.5,
                "profile": {
                    "data": {
                        "type": "profile",
                        "attributes": {
                            "email": "jane@example.com",
                            "phone_number": "+15555550100",
                            "first_name": "Jane",
                            "location": {"country": "US"},
                            "properties": {"plan": "pro"},
                        },
                    }
                },
            },
        }
    }


def test_sdk_lifecycle_and_screen_events_map_to_their_metrics() -> None:
    screen = mparticle.ScreenViewEvent()
    screen.screen_name = "Home"
    end = mparticle.SessionEndEvent()
    end.session_duration_ms = 6000
    install = mparticle.ApplicationStateTransitionEvent()
    install.application_transition_type = "application_initialized"
    install.is_first_run = True
    background = mparticle.ApplicationStateTransitionEvent()
    background.application_transition_type = "application_background"
    result = mapped(mparticle.SessionStartEvent(), install, screen, background, end)
    assert metrics(result) == [
        "Session Start",
        "Application Installed",
        "Screen View",
        "Application Background",
        "Session End",
    ]
    assert result.events[2].attributes["properties"] == {"screen_name": "Home"}
    assert result.events[4].attributes["properties"] == {"session_duration_ms": 6000}


def test_an_sdk_purchase_becomes_an_order_and_one_event_per_product() -> None:
    action = mparticle.ProductAction("purchase")
    action.transaction_id = "T-1"
    action.total_amount = 20.5
    action.products = [product("S1", 5.0, 2), product("S2", 10.5, 1)]
    purchase = mparticle.CommerceEvent(action)
    purchase.currency_code = "EUR"
    result = mapped(purchase)
    assert metrics(result) == ["Placed Order", "Ordered Product", "Ordered Product"]
    order_id = result.events[0].unique_id
    assert [e.unique_id for e in result.events] == [order_id, f"{order_id}:0", f"{order_id}:1"]
    assert [e.attributes["value"] for e in result.events] == [20.5, 10.0, 10.5]
    assert {e.attributes["value_currency"] for e in result.events} == {"EUR"}


@pytest.mark.parametrize(
    ("action", "metric"),
    [
        ("add_to_cart", "Added to Cart"),
        ("remove_from_cart", "Removed from Cart"),
        ("checkout", "Started Checkout"),
        ("checkout_option", "Checkout Option"),
        ("click", "Clicked Product"),
        ("view_detail", "Viewed Product"),
        ("refund", "Refunded Order"),
        ("add_to_wishlist", "Added to Wishlist"),
        ("remove_from_wish_list", "Removed from Wishlist"),
    ],
)
def test_every_sdk_product_action_maps_to_its_metric(action: str, metric: str) -> None:
    product_action = mparticle.ProductAction(action)
    product_action.products = [product("S1", 5.0, 1)]
    assert metrics(mapped(mparticle.CommerceEvent(product_action))) == [metric]


@pytest.mark.parametrize(("action", "metric"), [("view", "Viewed Promotion"), ("click", "Clicked Promotion")])
def test_sdk_promotions_map_to_promotion_metrics(action: str, metric: str) -> None:
    promotion = mparticle.Promotion()
    promotion.id, promotion.name = "P1", "Spring"
    promotion_action = mparticle.PromotionAction(action)
    promotion_action.promotions = [promotion]
    result = mapped(mparticle.CommerceEvent(promotion_action=promotion_action))
    assert metrics(result) == [metric]
    assert result.events[0].attributes["properties"] == {
        "Promotions": [{"PromotionID": "P1", "PromotionName": "Spring"}]
    }


def test_sdk_impressions_map_to_viewed_impression() -> None:
    impression = mparticle.ProductImpression()
    impression.product_impression_list = "Search"
    impression.products = [product("S1", 5.0, 1)]
    result = mapped(mparticle.CommerceEvent(product_impressions=[impression]))
    assert metrics(result) == ["Viewed Impression"]
    assert result.events[0].attributes["properties"]["Impressions"][0]["ListName"] == "Search"


def test_sdk_consent_becomes_a_subscription_request() -> None:
    consent = mparticle.GDPRConsentState()
    consent.consented, consent.document, consent.timestamp_unixtime_ms = True, "v2", T0
    consent.location, consent.hardware_id = "signup", "h"
    batch = sdk_batch(app_event("Signed Up"))
    state = mparticle.ConsentState()
    state.gdpr = {"Email_Marketing": consent}
    batch.consent_state = state
    result = map_batch(decode(batch), SETTINGS, NOW_MS)
    assert result.subscriptions == [
        Subscription(
            channels=("email",), email="jane@example.com", phone_number="+15555550100", timestamp_ms=1700000000000
        )
    ]
    request = subscription_request(result.subscriptions[0], SETTINGS.list_id, server_mode=False)
    assert request.body["data"]["relationships"] == {"list": {"data": {"type": "list", "id": "Y6nRLr"}}}


def test_an_sdk_batch_with_only_a_customer_id_drops_its_events() -> None:
    batch = sdk_batch(app_event("A"), app_event("B"), email=None, mobile=None)
    result = map_batch(decode(batch), SETTINGS, NOW_MS)
    assert drops(result) == [("no_email_or_phone", 0), ("no_email_or_phone", 1)]


def test_sdk_events_without_ids_get_ids_that_repeat_for_the_same_batch() -> None:
    first = [e.unique_id for e in mapped(app_event("A"), app_event("B")).events]
    second = [e.unique_id for e in mapped(app_event("A"), app_event("B")).events]
    assert first == second
    assert len(set(first)) == 2


def test_sdk_bulk_upload_bodies_decode_to_every_batch() -> None:
    client = mparticle.ApiClient(configuration=mparticle.Configuration())
    batches = [sdk_batch(app_event("A")), sdk_batch(app_event("B"))]
    raw = json.dumps(client.sanitize_for_serialization(batches)).encode()
    assert [b.events[0].name for b in decode_document(raw)] == ["A", "B"]
