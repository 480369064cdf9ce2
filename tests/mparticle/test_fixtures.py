"""Every real mParticle example message decodes, or is rejected with a reason where it should be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mparticle_klaviyo.config import Connection, ConnectionSettings
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.inputs import InputItem, map_item
from mparticle_klaviyo.mapping.batch import map_batch
from mparticle_klaviyo.mapping.result import MappedBatch, Subscription
from mparticle_klaviyo.mapping.settings import MappingSettings
from mparticle_klaviyo.mparticle.decode import decode_document
from mparticle_klaviyo.mparticle.files import read_records
from mparticle_klaviyo.mparticle.model import UserBatch
from tests.mapping.builders import NOW_MS, drops, metrics

# Files that decode, with their number of batches.
DECODES = {
    "events-api-docs/mparticle.inbound.eventsapi.sample.json": 1,
    "events-api-python-sdk/batch_all_supported_types.json": 1,
    "events-api-python-sdk/batch_email_in_other_id_10_phone_in_phone_number_2.json": 1,
    "events-api-python-sdk/batch_no_email_no_phone.json": 1,
    "events-api-python-sdk/batch_phone_only_mobile_number.json": 1,
    "events-api-python-sdk/batch_refund_and_screen_view.json": 1,
    "events-api-synthesized/outbound_webhook_style_batch.json": 1,
    "events-api-synthesized/web_sdk_style_inbound_batch.json": 1,
    "firehose-sdk/EventProcessingRequest_android.json": 1,
    "firehose-sdk/EventProcessingRequest_ios.json": 1,
    "firehose-synthesized/synthesized_event_processing_request_klaviyo.json": 1,
    "firehose-synthesized/synthesized_event_processing_request_verification_empty.json": 1,
}
# Files that are rejected, with the pointer and the start of the reason.
NOT_A_BATCH = "not an mParticle batch"
REJECTED = {
    "events-api-docs/mparticle.inbound.eventsapi.bulk.schema.json": ("/type", "'array' is not an event message"),
    "events-api-docs/mparticle.inbound.eventsapi.schema.json": ("", NOT_A_BATCH),
    "events-api-python-sdk/captured_post_v2_bulkevents.json": ("", NOT_A_BATCH),
    "events-api-python-sdk/captured_post_v2_events.json": ("", NOT_A_BATCH),
    **{
        f"firehose-sdk/{name}.json": ("/type", f"'{kind}' is not an event message")
        for name, kind in [
            ("AudienceMembershipChangeRequest", "audience_membership_change_request"),
            ("AudienceMembershipChangeResponse", "audience_membership_change_response"),
            ("AudienceSubscriptionRequest", "audience_subscription_request"),
            ("AudienceSubscriptionResponse", "audience_subscription_response"),
            ("DsrProcessingRequest", "dsr_processing_request"),
            ("DsrProcessingResponse", "dsr_processing_response"),
            ("EventProcessingResponse", "event_processing_response"),
            ("ModuleRegistrationRequest", "module_registration_request"),
            ("ModuleRegistrationResponse", "module_registration_response"),
        ]
    },
    "firehose-synthesized/synthesized_module_registration_response_klaviyo.json": (
        "/type",
        "'module_registration_response' is not an event message",
    ),
}
ALL_SIX = [
    "Session Start",
    "Application Installed",
    "Screen View",
    "Viewed Article",
    "Placed Order",
    "Ordered Product",
    "Ordered Product",
    "Application Background",
    "Session End",
]
CONSENT = MappingSettings(consent_mapping={"email_marketing": "email", "sms_marketing": "sms"}, list_id="Y6nRLr")


def messages(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.json") if "schema" not in p.relative_to(root).parts}


def load(root: Path, name: str) -> list[UserBatch]:
    return decode_document((root / name).read_bytes())


def mapped(root: Path, name: str, settings: MappingSettings = CONSENT) -> MappedBatch:
    [batch] = load(root, name)
    return map_batch(batch, settings, NOW_MS)


def test_every_example_message_is_classified(mparticle_fixtures: Path) -> None:
    assert messages(mparticle_fixtures) == set(DECODES) | set(REJECTED)


@pytest.mark.parametrize(("name", "count"), sorted(DECODES.items()))
def test_example_message_decodes_as_a_file_and_as_a_document(mparticle_fixtures: Path, name: str, count: int) -> None:
    [record] = list(read_records(mparticle_fixtures / name))
    assert record.error is None
    assert record.batches is not None
    assert len(record.batches) == count == len(load(mparticle_fixtures, name))


@pytest.mark.parametrize(("name", "expected"), sorted(REJECTED.items()))
def test_example_message_is_rejected_with_a_reason(
    mparticle_fixtures: Path, name: str, expected: tuple[str, str]
) -> None:
    with pytest.raises(InputError) as caught:
        load(mparticle_fixtures, name)
    assert caught.value.pointer == expected[0]
    assert caught.value.message.startswith(expected[1])


def test_the_captured_events_request_body_is_the_batch_the_sdk_sent(mparticle_fixtures: Path) -> None:
    capture = json.loads((mparticle_fixtures / "events-api-python-sdk/captured_post_v2_events.json").read_bytes())
    assert (capture["method"], capture["path"]) == ("POST", "/v2/events")
    [batch] = decode_document(json.dumps(capture["body"]).encode())
    assert batch == load(mparticle_fixtures, "events-api-python-sdk/batch_all_supported_types.json")[0]


def test_the_captured_bulk_request_body_is_two_batches(mparticle_fixtures: Path) -> None:
    capture = json.loads((mparticle_fixtures / "events-api-python-sdk/captured_post_v2_bulkevents.json").read_bytes())
    assert (capture["method"], capture["path"]) == ("POST", "/v2/bulkevents")
    batches = decode_document(json.dumps(capture["body"]).encode())
    assert [b.batch_key for b in batches] == [
        "a1b2c3d4-0000-4000-8000-000000000001",
        "a1b2c3d4-0000-4000-8000-000000000002",
    ]
    assert [len(b.events) for b in batches] == [8, 8]


def test_the_python_sdk_batch_maps_every_supported_type(mparticle_fixtures: Path) -> None:
    result = mapped(mparticle_fixtures, "events-api-python-sdk/batch_all_supported_types.json")
    assert metrics(result) == [*ALL_SIX[:4], "Added to Cart", *ALL_SIX[4:]]
    assert result.subscriptions == [
        Subscription(
            channels=("email",), email="jane.doe@example.com", phone_number="+15555550100", timestamp_ms=1700000000000
        )
    ]
    assert [(n.reason, n.consent) for n in result.notices] == [("consent_removal_not_supported", "sms_marketing")]


def test_the_python_sdk_batch_builds_the_documented_profile(mparticle_fixtures: Path) -> None:
    profile = mapped(mparticle_fixtures, "events-api-python-sdk/batch_all_supported_types.json").events[0].profile
    assert profile == {
        "email": "jane.doe@example.com",
        "phone_number": "+15555550100",
        "first_name": "Jane",
        "last_name": "Doe",
        "location": {"city": "Boston", "region": "MA", "country": "US", "zip": "02110", "address1": "1 Main St"},
        "properties": {
            "Mobile": "+15555550100",
            "Gender": "F",
            "Age": "34",
            "favorite_color": "green",
            "interests": ["running", "jazz"],
            # The fixture's CCPA data_sale_opt_out state (consented: false): not opted out.
            "data_sale_opt_out": False,
        },
    }


def test_the_python_sdk_custom_event_uses_event_id_and_value(mparticle_fixtures: Path) -> None:
    result = mapped(mparticle_fixtures, "events-api-python-sdk/batch_all_supported_types.json")
    article = result.events[3].attributes
    assert (article["unique_id"], article["value"], article["properties"]) == ("evt-0001", 9.99, {"article_id": "a-17"})


def test_a_batch_with_email_in_other10_and_phone_in_phone2_maps_with_those_settings(mparticle_fixtures: Path) -> None:
    name = "events-api-python-sdk/batch_email_in_other_id_10_phone_in_phone_number_2.json"
    assert drops(mapped(mparticle_fixtures, name)) == [("no_email_or_phone", 0)]
    settings = MappingSettings(email_identity="other10", phone_identity="phone_number_2")
    result = mapped(mparticle_fixtures, name, settings)
    assert metrics(result) == ["Viewed Pricing"]
    assert result.events[0].profile == {"email": "jane.other10@example.com", "phone_number": "+15555550102"}


def test_a_batch_without_email_or_phone_drops_its_event(mparticle_fixtures: Path) -> None:
    result = mapped(mparticle_fixtures, "events-api-python-sdk/batch_no_email_no_phone.json")
    assert (result.events, drops(result)) == ([], [("no_email_or_phone", 0)])


def test_a_phone_only_batch_maps_with_an_e164_phone(mparticle_fixtures: Path) -> None:
    result = mapped(mparticle_fixtures, "events-api-python-sdk/batch_phone_only_mobile_number.json")
    assert metrics(result) == ["Signed Up"]
    assert result.events[0].profile == {"phone_number": "+15555550100", "location": {"country": "USA"}}


def test_a_refund_and_a_screen_view_map_to_their_metrics(mparticle_fixtures: Path) -> None:
    result = mapped(mparticle_fixtures, "events-api-python-sdk/batch_refund_and_screen_view.json")
    assert metrics(result) == ["Refunded Order", "Screen View"]
    refund = result.events[0].attributes
    assert (refund["value"], refund["value_currency"], refund["properties"]["OrderId"]) == (20.0, "USD", "T-1001")


def test_the_outbound_webhook_batch_maps_with_array_identities(mparticle_fixtures: Path) -> None:
    result = mapped(mparticle_fixtures, "events-api-synthesized/outbound_webhook_style_batch.json")
    assert metrics(result) == ["Screen View", "Viewed Article"]
    profile = result.events[0].profile
    assert (profile["email"], profile["phone_number"], profile["first_name"]) == (
        "jane.doe@example.com",
        "+15555550100",
        "Jane",
    )
    assert [e.unique_id for e in result.events] == ["e0000000-0000-4000-8000-000000000301", "evt-0002"]


def test_the_web_sdk_batch_maps_as_mobileweb_with_numeric_attributes(mparticle_fixtures: Path) -> None:
    [batch] = load(mparticle_fixtures, "events-api-synthesized/web_sdk_style_inbound_batch.json")
    assert (batch.platform, batch.mpid) == ("mobileweb", "264200868161219981")
    result = map_batch(batch, CONSENT, NOW_MS)
    assert metrics(result) == ["Screen View", "Media Session Start"]
    assert result.events[1].attributes["properties"]["content_duration"] == 120000


def test_the_docs_sample_has_no_email_or_phone_so_every_event_is_dropped(mparticle_fixtures: Path) -> None:
    result = mapped(mparticle_fixtures, "events-api-docs/mparticle.inbound.eventsapi.sample.json")
    assert drops(result) == [("no_email_or_phone", n) for n in range(14)]


def test_the_docs_sample_with_an_email_maps_its_six_types_and_drops_the_rest(mparticle_fixtures: Path) -> None:
    doc: dict[str, Any] = json.loads(
        (mparticle_fixtures / "events-api-docs/mparticle.inbound.eventsapi.sample.json").read_bytes()
    )
    doc["user_identities"]["email"] = "docs@example.com"
    [batch] = decode_document(json.dumps(doc).encode())
    result = map_batch(batch, MappingSettings(), NOW_MS)
    assert metrics(result) == [
        "Session Start",
        "Application Foreground",
        "Session End",
        "Session Start",
        "Application Installed",
        "Example custom event",
        "Screen View",
        "Placed Order",
        "Ordered Product",
    ]
    assert drops(result) == [("unsupported_event_type", n) for n in (0, 2, 7, 8, 11, 12)]


@pytest.mark.parametrize(
    "name", ["firehose-sdk/EventProcessingRequest_ios.json", "firehose-sdk/EventProcessingRequest_android.json"]
)
def test_the_firehose_sdk_examples_carry_only_a_hashed_email_so_their_events_are_dropped(
    mparticle_fixtures: Path, name: str
) -> None:
    assert drops(mapped(mparticle_fixtures, name)) == [("no_email_or_phone", 0), ("no_email_or_phone", 1)]


def test_an_empty_verification_request_maps_to_nothing(mparticle_fixtures: Path) -> None:
    result = mapped(
        mparticle_fixtures, "firehose-synthesized/synthesized_event_processing_request_verification_empty.json"
    )
    assert (result.events, result.subscriptions, result.notices) == ([], [], [])


def test_the_synthesized_firehose_request_maps_with_its_own_settings(mparticle_fixtures: Path) -> None:
    [batch] = load(mparticle_fixtures, "firehose-synthesized/synthesized_event_processing_request_klaviyo.json")
    table = {"public_api_key": "CONFIGURED_KEY_4d2", "list_id": "Y6nRLr"}
    configured = Connection("main", ConnectionSettings.model_validate(table), table)
    result = map_item(InputItem("fixture", 0, batch=batch), configured, NOW_MS)
    assert result.connection.public_key.reveal() == "PUBKEY"
    assert metrics(result.result) == ALL_SIX
    profile = result.result.events[0].profile
    assert profile["image"] == "https://example.com/jane.png"
    assert "profile_photo_url" not in profile["properties"]
    assert profile["properties"]["interests"] == ["running", "jazz"]
    assert result.result.subscriptions == [
        Subscription(
            channels=("email",), email="jane.doe@example.com", phone_number="+15555550100", timestamp_ms=1700000000000
        )
    ]
    assert [(n.reason, n.consent) for n in result.result.notices] == [
        ("consent_removal_not_supported", "sms_marketing")
    ]
    assert [e.unique_id for e in result.result.events][:2] == [
        "11111111-1111-4111-8111-111111111101",
        "11111111-1111-4111-8111-111111111102",
    ]


def configured(**table: Any) -> Connection:
    """A connection configured from a table, as ``load_config`` builds it."""
    table = {"public_api_key": "CONFIGURED_KEY_4d2", "list_id": "Y6nRLr", **table}
    return Connection("main", ConnectionSettings.model_validate(table), table)


PYTHON_SDK_BATCH = "events-api-python-sdk/batch_all_supported_types.json"


@pytest.mark.parametrize("setting", ["Customer ID", "customer_id", "customerid"])
def test_the_python_sdk_customerid_is_sent_as_the_external_id(mparticle_fixtures: Path, setting: str) -> None:
    # The SDK writes the identity as "customerid" (no underscore); peers map it to the user id.
    [batch] = load(mparticle_fixtures, PYTHON_SDK_BATCH)
    connection = configured(external_id_identity_type=setting, consent_mapping={"email_marketing": "email"})
    result = map_item(InputItem("fixture", 0, batch=batch), connection, NOW_MS).result
    assert metrics(result) == [*ALL_SIX[:4], "Added to Cart", *ALL_SIX[4:]]
    for event in result.events:
        profile = event.profile
        assert (profile["email"], profile["phone_number"], profile["external_id"]) == (
            "jane.doe@example.com",
            "+15555550100",
            "cust-42",
        )
    assert [s.external_id for s in result.subscriptions] == ["cust-42"]


def test_the_python_sdk_mpid_can_be_the_external_id(mparticle_fixtures: Path) -> None:
    [batch] = load(mparticle_fixtures, PYTHON_SDK_BATCH)
    result = map_item(InputItem("fixture", 0, batch=batch), configured(external_id_identity_type="MPID"), NOW_MS)
    assert {e.profile["external_id"] for e in result.result.events} == {"1234567890123456789"}


def test_an_external_id_alone_does_not_make_a_batch_sendable(mparticle_fixtures: Path) -> None:
    [batch] = load(mparticle_fixtures, "events-api-python-sdk/batch_no_email_no_phone.json")
    connection = configured(external_id_identity_type="Customer ID")
    result = map_item(InputItem("fixture", 0, batch=batch), connection, NOW_MS).result
    assert (result.events, drops(result)) == ([], [("no_email_or_phone", 0)])


def test_a_firehose_request_setting_sends_its_customer_identity_as_the_external_id(mparticle_fixtures: Path) -> None:
    [batch] = load(mparticle_fixtures, "firehose-synthesized/synthesized_event_processing_request_klaviyo.json")
    assert batch.settings is not None
    request = msgspec.structs.replace(batch, settings={**batch.settings, "externalIdIdentityType": "Customer ID"})
    assert (
        "external_id"
        not in map_item(InputItem("fixture", 0, batch=batch), configured(), NOW_MS).result.events[0].profile
    )
    result = map_item(InputItem("fixture", 0, batch=request), configured(), NOW_MS).result
    assert {e.profile["external_id"] for e in result.events} == {"cust-42"}
