"""Firehose event_processing_request -> the internal UserBatch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mparticle_klaviyo.mparticle.firehose import EventProcessingRequest
from mparticle_klaviyo.mparticle.from_firehose import normalize_firehose
from mparticle_klaviyo.mparticle.model import Commerce, Consent, Impression, Item, PromotionItem, UserBatch


def request(**fields: Any) -> dict[str, Any]:
    return {"type": "event_processing_request", "id": "req-1", "timestamp_ms": 1, **fields}


def normalize(doc: dict[str, Any]) -> UserBatch:
    return normalize_firehose(msgspec.convert(doc, EventProcessingRequest))


def one_event(**event: Any) -> Any:
    return normalize(request(events=[{"id": "ev-1", "timestamp_ms": 1700000000000, **event}])).events[0]


def test_a_request_is_marked_as_coming_from_firehose() -> None:
    assert normalize(request()).source == "firehose"


def test_only_raw_identities_are_kept_because_hashes_cannot_be_sent() -> None:
    batch = normalize(
        request(
            user_identities=[
                {"type": "email", "encoding": "md5", "value": "e179e95c00e7718ab4a23840f992ea63"},
                {"type": "mobile_number", "encoding": "raw", "value": "+15555550100"},
                {"type": "other", "encoding": "RAW", "value": "o"},
                {"type": "other2", "encoding": "sha256", "value": "abc"},
            ]
        )
    )
    assert batch.identities == {"mobile_number": "+15555550100", "other": "o"}


def test_identities_without_an_encoding_count_as_raw() -> None:
    batch = normalize(request(user_identities=[{"type": "email", "value": "a@example.com"}]))
    assert batch.identities == {"email": "a@example.com"}


def test_firehose_identity_names_become_canonical() -> None:
    batch = normalize(
        request(
            user_identities=[
                {"type": "other10", "encoding": "raw", "value": "o10"},
                {"type": "customer", "encoding": "raw", "value": "c"},
                {"type": "phone_number_2", "encoding": "raw", "value": "+15555550102"},
            ]
        )
    )
    assert batch.identities == {"other10": "o10", "customer_id": "c", "phone_number_2": "+15555550102"}


def test_empty_identity_values_are_left_out() -> None:
    batch = normalize(request(user_identities=[{"type": "email", "encoding": "raw", "value": ""}]))
    assert batch.identities == {}


def test_list_valued_attributes_are_merged_into_the_attributes() -> None:
    batch = normalize(request(user_attributes={"$City": "Boston"}, user_attribute_lists={"interests": ["a", "b"]}))
    assert batch.user_attributes == {"$City": "Boston", "interests": ["a", "b"]}


@pytest.mark.parametrize(
    ("runtime", "platform"),
    [("ios", "ios"), ("android", "android"), ("mobileweb", "mobileweb"), ("unknown", "customfeeds")],
)
def test_the_runtime_environment_type_is_the_platform(runtime: str, platform: str) -> None:
    assert normalize(request(runtime_environment={"type": runtime})).platform == platform


def test_a_request_without_runtime_environment_is_a_custom_feed() -> None:
    assert normalize(request()).platform == "customfeeds"


def test_consent_uses_firehose_wire_names_and_lower_cased_purposes() -> None:
    batch = normalize(
        request(
            consent_state={
                "gdpr_consent_state": {"consentPurpose": {"consented": True, "timestamp_unixtime_ms": 7}},
                "ccpa_consent_state": {"data_sale_opt_out": {"consented": True}},
            }
        )
    )
    assert batch.consents == (Consent("consentpurpose", True, 7), Consent("data_sale_opt_out", True, None))


def test_account_settings_travel_with_the_batch() -> None:
    batch = normalize(request(account={"account_id": 1, "account_settings": {"publicApiKey": "K", "listId": "L"}}))
    assert batch.settings == {"publicApiKey": "K", "listId": "L"}


def test_the_request_id_is_the_batch_key_and_mpid_is_text() -> None:
    batch = normalize(request(mpid="12345"))
    assert (batch.batch_key, batch.mpid) == ("req-1", "12345")


def test_a_custom_event_keeps_name_attributes_time_and_firehose_id() -> None:
    event = one_event(type="custom_event", name="customEvent", attributes={"k": "v"}, source_id="src-1")
    assert (event.type, event.name, event.attributes) == ("custom_event", "customEvent", {"k": "v"})
    assert (event.timestamp_ms, event.firehose_id, event.source_message_id) == (1700000000000, "ev-1", None)


def test_a_screen_view_is_named_by_screen_name() -> None:
    assert one_event(type="screen_view", screen_name="Home").name == "Home"


def test_session_length_becomes_session_duration() -> None:
    assert one_event(type="session_end", session_length_ms=6000).session_duration_ms == 6000


@pytest.mark.parametrize("state", ["install", "upgrade", "initialize", "exit", "background", "foreground"])
def test_application_state_is_kept_as_the_transition(state: str) -> None:
    assert one_event(type="application_state_transition", application_state=state).transition == state


def test_a_product_action_becomes_a_product_commerce() -> None:
    event = one_event(
        type="product_action",
        action="purchase",
        transaction_id="T-1",
        affiliation="store",
        total_amount=11,
        tax_amount="1",
        shipping_amount=0,
        currency_code="USD",
        coupon_code="c",
        products=[{"id": "p", "name": "n", "price": 10, "quantity": 1, "total_amount": 10, "attributes": {"a": "b"}}],
    )
    assert (event.type, event.currency_code) == ("commerce", "USD")
    assert event.commerce == Commerce(
        kind="product",
        action="purchase",
        transaction_id="T-1",
        affiliation="store",
        total_amount=11,
        tax_amount=1,
        shipping_amount=0,
        coupon_code="c",
        items=(Item(id="p", name="n", price=10, quantity=1, total=10, attributes={"a": "b"}),),
    )


def test_a_product_action_without_an_action_is_unknown() -> None:
    commerce = one_event(type="product_action").commerce
    assert commerce is not None
    assert commerce.action == "unknown"


def test_a_promotion_action_becomes_a_promotion_commerce() -> None:
    event = one_event(type="promotion_action", action="view", promotions=[{"id": "P1", "creative": "banner"}])
    assert event.commerce == Commerce(
        kind="promotion", action="view", promotions=(PromotionItem(id="P1", creative="banner"),)
    )


def test_an_impression_becomes_an_impression_commerce() -> None:
    event = one_event(type="impression", impressions=[{"impression_list_name": "L", "products": [{"id": "S"}]}])
    assert event.commerce == Commerce(
        kind="impression", action="impression", impressions=(Impression(list_name="L", items=(Item(id="S"),)),)
    )


def test_other_firehose_event_types_are_kept_verbatim_for_the_mapper_to_drop() -> None:
    event = one_event(type="push_message_open")
    assert (event.type, event.commerce) == ("push_message_open", None)


def test_the_sdk_ios_example_keeps_only_its_raw_identities(mparticle_fixtures: Path) -> None:
    raw = json.loads((mparticle_fixtures / "firehose-sdk" / "EventProcessingRequest_ios.json").read_bytes())
    batch = normalize(raw)
    assert batch.identities == {"google": "1234567890", "facebook": "1234567890", "other": "1234567890"}
    assert (batch.platform, batch.mpid, len(batch.events)) == ("ios", "12345", 2)
    assert [e.type for e in batch.events] == ["custom_event", "commerce"]
