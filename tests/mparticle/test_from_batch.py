"""JSON batches (inbound and outbound shapes) -> the internal UserBatch."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from mparticle_klaviyo.mparticle.batch import Batch
from mparticle_klaviyo.mparticle.from_batch import normalize_batch
from mparticle_klaviyo.mparticle.model import Commerce, Consent, Impression, Item, PromotionItem, UserBatch


def normalize(doc: dict[str, Any]) -> UserBatch:
    return normalize_batch(msgspec.convert(doc, Batch))


def test_a_batch_is_marked_as_coming_from_a_batch() -> None:
    assert normalize({"events": []}).source == "batch"


def test_inbound_identities_object_becomes_canonical_identities() -> None:
    batch = normalize(
        {"user_identities": {"email": "a@example.com", "mobile_number": "+15555550100", "other_id_10": "o10"}}
    )
    assert batch.identities == {"email": "a@example.com", "mobile_number": "+15555550100", "other10": "o10"}


def test_outbound_identities_array_becomes_the_same_identities() -> None:
    batch = normalize(
        {
            "user_identities": [
                {"identity_type": "email", "identity": "a@example.com", "created_this_batch": False},
                {"identity_type": "mobile_number", "identity": "+15555550100", "timestamp_unixtime_ms": 1},
                {"identity_type": "other_id_10", "identity": "o10"},
            ]
        }
    )
    assert batch.identities == {"email": "a@example.com", "mobile_number": "+15555550100", "other10": "o10"}


@pytest.mark.parametrize("key", ["customer_id", "customerid"])
def test_customer_id_and_the_python_sdks_customerid_are_the_same_identity(key: str) -> None:
    assert normalize({"user_identities": {key: "cust-42"}}).identities == {"customer_id": "cust-42"}


@pytest.mark.parametrize("n", range(2, 11))
def test_other_id_n_identities_become_other_n(n: int) -> None:
    assert normalize({"user_identities": {f"other_id_{n}": "x"}}).identities == {f"other{n}": "x"}


def test_numeric_identity_values_become_their_decimal_text() -> None:
    batch = normalize({"user_identities": {"mobile_number": 15555550100, "other": 7.0, "other_id_2": 2.5}})
    assert batch.identities == {"mobile_number": "15555550100", "other": "7", "other2": "2.5"}


def test_empty_and_null_identity_values_are_left_out() -> None:
    batch = normalize(
        {"user_identities": [{"identity_type": "email", "identity": None}, {"identity_type": "other", "identity": ""}]}
    )
    assert batch.identities == {}


def test_missing_identities_give_an_empty_mapping() -> None:
    assert normalize({"events": []}).identities == {}


def test_platform_comes_from_device_info() -> None:
    assert normalize({"device_info": {"platform": "Android"}}).platform == "android"


def test_web_sdk_platform_web_is_mobileweb() -> None:
    assert normalize({"device_info": {"platform": "web"}}).platform == "mobileweb"


def test_application_info_os_is_the_fallback_platform() -> None:
    assert normalize({"device_info": {}, "application_info": {"os": "TVOS"}}).platform == "tvos"


def test_a_batch_without_device_information_is_a_custom_feed() -> None:
    assert normalize({"events": []}).platform == "customfeeds"


def test_an_out_of_band_batch_is_a_custom_feed() -> None:
    assert normalize({"device_info": {"platform": "out_of_band"}}).platform == "customfeeds"


def test_a_numeric_mpid_is_kept_as_exact_text() -> None:
    assert normalize({"mpid": 1234567890123456789}).mpid == "1234567890123456789"


def test_a_string_mpid_is_kept_verbatim() -> None:
    assert normalize({"mpid": "264200868161219981"}).mpid == "264200868161219981"


def test_gdpr_purposes_are_lower_cased_and_ccpa_is_included() -> None:
    batch = normalize(
        {
            "consent_state": {
                "gdpr": {"Email_Marketing": {"consented": True, "timestamp_unixtime_ms": 5, "document": "d"}},
                "ccpa": {"data_sale_opt_out": {"consented": False}},
            }
        }
    )
    assert batch.consents == (
        Consent("email_marketing", True, 5),
        Consent("data_sale_opt_out", False, None),
    )


def test_null_consent_state_gives_no_consents() -> None:
    assert normalize({"consent_state": None}).consents == ()


def test_source_request_id_is_the_batch_key() -> None:
    assert normalize({"source_request_id": "req-1", "batch_id": 9}).batch_key == "req-1"


def test_batch_id_is_the_batch_key_when_there_is_no_source_request_id() -> None:
    assert normalize({"batch_id": 8912345678901234}).batch_key == "8912345678901234"


def test_a_batch_without_ids_has_no_batch_key() -> None:
    assert normalize({"events": []}).batch_key is None


def test_user_attributes_keep_numbers_lists_and_nulls() -> None:
    attributes = {"age": 34, "score": 1.5, "tags": ["a", "b"], "gone": None, "$FirstName": "Jane"}
    assert normalize({"user_attributes": attributes}).user_attributes == attributes


def test_events_keep_their_position_and_type() -> None:
    batch = normalize(
        {
            "events": [
                {"event_type": "session_start", "data": {}},
                {"event_type": "crash_report", "data": {}},
                {"event_type": "commerce_event", "data": {}},
            ]
        }
    )
    assert [(e.index, e.type) for e in batch.events] == [(0, "session_start"), (1, "crash_report"), (2, "commerce")]


def test_an_event_without_data_gets_empty_data() -> None:
    event = normalize({"events": [{"event_type": "session_start"}]}).events[0]
    assert (event.timestamp_ms, event.attributes, event.name) == (None, {}, None)


def test_a_custom_event_is_named_by_event_name_not_screen_name() -> None:
    data = {"event_name": "Signed Up", "screen_name": "Home", "custom_attributes": {"plan": "pro", "seats": 3}}
    event = normalize({"events": [{"event_type": "custom_event", "data": data}]}).events[0]
    assert (event.name, event.attributes) == ("Signed Up", {"plan": "pro", "seats": 3})


def test_a_screen_view_is_named_by_screen_name() -> None:
    event = normalize({"events": [{"event_type": "screen_view", "data": {"screen_name": "Home"}}]}).events[0]
    assert event.name == "Home"


def test_event_time_and_ids_are_kept() -> None:
    data = {"timestamp_unixtime_ms": 1700000000123, "source_message_id": "m-1", "event_id": 6004677780660780001}
    event = normalize({"events": [{"event_type": "session_start", "data": data}]}).events[0]
    assert (event.timestamp_ms, event.source_message_id, event.firehose_id) == (1700000000123, "m-1", None)


def test_an_empty_source_message_id_counts_as_none() -> None:
    data = {"source_message_id": ""}
    assert normalize({"events": [{"event_type": "session_start", "data": data}]}).events[0].source_message_id is None


def test_session_end_keeps_its_duration() -> None:
    data = {"session_duration_ms": 6000}
    assert normalize({"events": [{"event_type": "session_end", "data": data}]}).events[0].session_duration_ms == 6000


def test_an_app_state_transition_is_translated_to_a_firehose_state() -> None:
    data = {"application_transition_type": "application_initialized", "is_first_run": False, "is_upgrade": True}
    event = normalize({"events": [{"event_type": "application_state_transition", "data": data}]}).events[0]
    assert event.transition == "upgrade"


def test_a_product_action_becomes_a_product_commerce_with_numeric_amounts() -> None:
    data = {
        "currency_code": "EUR",
        "product_action": {
            "action": "purchase",
            "transaction_id": 1001,
            "affiliation": "store",
            "total_amount": "108.5",
            "tax_amount": 8,
            "shipping_amount": "0",
            "coupon_code": "SPRING",
            "products": [
                {
                    "id": 17,
                    "name": "Shoe",
                    "brand": "Acme",
                    "category": "Shoes",
                    "variant": "Red",
                    "position": 1,
                    "price": "89.5",
                    "quantity": 2,
                    "coupon_code": "P",
                    "total_product_amount": 179,
                    "custom_attributes": {"size": "9"},
                }
            ],
        },
    }
    event = normalize({"events": [{"event_type": "commerce_event", "data": data}]}).events[0]
    assert event.currency_code == "EUR"
    assert event.commerce == Commerce(
        kind="product",
        action="purchase",
        transaction_id="1001",
        affiliation="store",
        total_amount=108.5,
        tax_amount=8,
        shipping_amount=0,
        coupon_code="SPRING",
        items=(
            Item(
                id="17",
                name="Shoe",
                brand="Acme",
                category="Shoes",
                variant="Red",
                position=1,
                price=89.5,
                quantity=2,
                coupon_code="P",
                total=179,
                attributes={"size": "9"},
            ),
        ),
    )


def test_a_promotion_action_becomes_a_promotion_commerce() -> None:
    data = {"promotion_action": {"action": "click", "promotions": [{"id": 5, "name": "Sale", "position": 2}]}}
    event = normalize({"events": [{"event_type": "commerce_event", "data": data}]}).events[0]
    assert event.commerce == Commerce(
        kind="promotion", action="click", promotions=(PromotionItem(id="5", name="Sale", position="2"),)
    )


def test_product_impressions_become_an_impression_commerce() -> None:
    data = {"product_impressions": [{"product_impression_list": "Search", "products": [{"id": "S1"}]}]}
    event = normalize({"events": [{"event_type": "commerce_event", "data": data}]}).events[0]
    assert event.commerce == Commerce(
        kind="impression", action="impression", impressions=(Impression(list_name="Search", items=(Item(id="S1"),)),)
    )


def test_a_commerce_event_without_an_action_has_no_commerce_part() -> None:
    data = {"currency_code": "USD", "product_impressions": []}
    assert normalize({"events": [{"event_type": "commerce_event", "data": data}]}).events[0].commerce is None


def test_a_non_commerce_event_never_has_a_commerce_part() -> None:
    data = {"product_action": {"action": "purchase"}}
    assert normalize({"events": [{"event_type": "custom_event", "data": data}]}).events[0].commerce is None
