"""Rules 21-22: client subscriptions and the server bulk subscribe job."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import (
    assert_error,
    bulk_subscription_body,
    client,
    one,
    server,
    subscriber,
    subscription_body,
    with_value,
    without,
)

ATTRS = "/data/attributes/profile/data/attributes"
SUBS = f"{ATTRS}/subscriptions"
EMAIL_MARKETING = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}
SMS_MARKETING = {"sms": {"marketing": {"consent": "SUBSCRIBED"}}}
PAST = "2026-10-30T09:00:00+00:00"
BULK = "/api/profile-subscription-bulk-create-jobs"


def _subscribe(body: Any) -> tuple[Any, dict[str, Any]]:
    return one(client("/client/subscriptions", body))


def test_a_client_subscription_is_202_and_records_list_channels_and_contact() -> None:
    body = subscription_body(
        {**EMAIL_MARKETING, **SMS_MARKETING}, email="jane@example.com", phone_number="+15005550006"
    )
    resp, state = _subscribe(body)
    assert resp.status == 202 and resp.body == b""
    assert state["subscriptions"] == [
        {
            "account": "DEMO01",
            "profile_id": state["profiles"]["jane@example.com"]["id"],
            "list_id": "LIST01",
            "channels": ["email.marketing", "sms.marketing"],
            "email": "jane@example.com",
            "phone_number": "+15005550006",
            "custom_source": "mParticle consent sync",
            "endpoint": "POST /client/subscriptions",
        }
    ]


def test_only_the_channels_in_the_subscriptions_object_are_subscribed() -> None:
    _, state = _subscribe(subscription_body(EMAIL_MARKETING, email="jane@example.com", phone_number="+15005550006"))
    assert state["subscriptions"][0]["channels"] == ["email.marketing"]


def test_without_a_subscriptions_object_marketing_is_recorded_for_each_present_identifier() -> None:
    _, state = _subscribe(subscription_body(email="jane@example.com", phone_number="+15005550006"))
    assert state["subscriptions"][0]["channels"] == ["email.marketing", "sms.marketing"]


def test_without_a_subscriptions_object_an_email_only_profile_gets_email_marketing() -> None:
    _, state = _subscribe(subscription_body())
    assert state["subscriptions"][0]["channels"] == ["email.marketing"]


def test_a_subscription_without_relationships_is_400() -> None:
    resp, state = _subscribe(subscription_body(list_id=None))
    assert_error(resp, 400, pointer="/data/relationships")
    assert state["subscriptions"] == []


def test_a_subscription_without_a_list_is_400() -> None:
    resp, _ = _subscribe(with_value(subscription_body(), "data/relationships", {}))
    assert_error(resp, 400, pointer="/data/relationships/list")


def test_a_list_without_an_id_is_400() -> None:
    resp, _ = _subscribe(without(subscription_body(), "data/relationships/list/data/id"))
    assert_error(resp, 400, pointer="/data/relationships/list/data/id")


def test_a_list_that_is_not_configured_is_400() -> None:
    resp, state = _subscribe(subscription_body(list_id="OTHER1"))
    assert_error(resp, 400, pointer="/data/relationships/list/data/id")
    assert state["subscriptions"] == []


def test_a_subscriber_without_email_or_phone_is_400() -> None:
    resp, _ = _subscribe(subscription_body(external_id="mp-1"))
    assert_error(resp, 400, pointer="/data/attributes/profile/data")


@pytest.mark.parametrize("consent", ["UNSUBSCRIBED", "subscribed", None])
def test_consent_other_than_subscribed_is_400(consent: str | None) -> None:
    body = subscription_body({"email": {"marketing": {"consent": consent}}})
    resp, _ = _subscribe(body)
    assert_error(resp, 400, pointer=f"{SUBS}/email/marketing/consent")


def test_consented_at_on_a_client_subscription_is_400() -> None:
    body = subscription_body({"email": {"marketing": {"consent": "SUBSCRIBED", "consented_at": PAST}}})
    resp, _ = _subscribe(body)
    assert_error(resp, 400, pointer=f"{SUBS}/email/marketing/consented_at")


def test_sms_without_a_phone_number_is_400_with_klaviyos_message() -> None:
    resp, _ = _subscribe(subscription_body(SMS_MARKETING, email="jane@example.com"))
    assert_error(
        resp,
        400,
        pointer=f"{ATTRS}/phone_number",
        detail="'phone_number' must not be empty when the sms channel is included in 'subscriptions'.",
    )


def test_sms_with_an_invalid_phone_number_is_400_about_the_phone() -> None:
    resp, _ = _subscribe(subscription_body(SMS_MARKETING, email="jane@example.com", phone_number="555"))
    error = assert_error(resp, 400, pointer=f"{ATTRS}/phone_number")
    assert "E.164" in error["detail"]


def test_email_consent_without_an_email_is_400() -> None:
    resp, _ = _subscribe(subscription_body(EMAIL_MARKETING, phone_number="+15005550006"))
    assert_error(resp, 400, pointer=f"{ATTRS}/email")


def test_push_without_marketing_is_400() -> None:
    resp, _ = _subscribe(subscription_body({"push": {"tokens": []}}))
    assert_error(resp, 400, pointer=f"{SUBS}/push/marketing")


def test_an_invalid_phone_beside_an_email_is_ignored_with_the_partial_failure_header() -> None:
    resp, state = _subscribe(subscription_body(email="jane@example.com", phone_number="12345"))
    assert resp.status == 202
    assert resp.headers["X-Klaviyo-Partial-Failure"] == "phone_number"
    assert state["subscriptions"][0]["channels"] == ["email.marketing"]
    assert state["subscriptions"][0]["phone_number"] is None


def test_an_unknown_channel_is_400() -> None:
    resp, _ = _subscribe(subscription_body({"mail": {"marketing": {"consent": "SUBSCRIBED"}}}))
    assert_error(resp, 400, pointer=f"{SUBS}/mail")


def test_a_bulk_subscription_records_each_profile() -> None:
    profiles = [subscriber(), subscriber(SMS_MARKETING, phone_number="+15005550006")]
    resp, state = one(server(BULK, bulk_subscription_body(profiles)))
    assert resp.status == 202 and resp.body == b""
    assert [s["channels"] for s in state["subscriptions"]] == [["email.marketing"], ["sms.marketing"]]
    assert all(s["list_id"] == "LIST01" for s in state["subscriptions"])


def test_a_bulk_subscription_list_is_optional() -> None:
    resp, state = one(server(BULK, bulk_subscription_body([subscriber()], list_id=None)))
    assert resp.status == 202
    assert state["subscriptions"][0]["list_id"] is None


def test_a_bulk_subscription_of_1001_profiles_is_400() -> None:
    profiles = [subscriber(email=f"p{i}@example.com") for i in range(1001)]
    resp, state = one(server(BULK, bulk_subscription_body(profiles)))
    assert_error(resp, 400, pointer="/data/attributes/profiles/data")
    assert state["subscriptions"] == []


def test_a_bulk_subscription_of_1000_profiles_is_accepted() -> None:
    profiles = [subscriber(email=f"p{i}@example.com") for i in range(1000)]
    resp, state = one(server(BULK, bulk_subscription_body(profiles)))
    assert resp.status == 202
    assert len(state["subscriptions"]) == 1000


def test_a_historical_import_needs_consented_at_on_every_channel() -> None:
    channels = {"email": {"marketing": {"consent": "SUBSCRIBED", "consented_at": PAST}}, **SMS_MARKETING}
    body = bulk_subscription_body([subscriber(channels, email="jane@example.com", phone_number="+15005550006")], True)
    resp, state = one(server(BULK, body))
    assert_error(
        resp, 400, pointer="/data/attributes/profiles/data/0/attributes/subscriptions/sms/marketing/consented_at"
    )
    assert state["subscriptions"] == []


def test_a_historical_import_with_past_consent_times_is_accepted() -> None:
    channels = {"email": {"marketing": {"consent": "SUBSCRIBED", "consented_at": PAST}}}
    resp, state = one(server(BULK, bulk_subscription_body([subscriber(channels)], True)))
    assert resp.status == 202
    assert state["subscriptions"][0]["historical_import"] is True


def test_a_historical_import_with_a_future_consent_time_is_400() -> None:
    channels = {"email": {"marketing": {"consent": "SUBSCRIBED", "consented_at": "2026-11-02T00:00:00Z"}}}
    resp, _ = one(server(BULK, bulk_subscription_body([subscriber(channels)], True)))
    assert_error(
        resp, 400, pointer="/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consented_at"
    )


def test_consented_at_without_historical_import_is_400_in_bulk() -> None:
    channels = {"email": {"marketing": {"consent": "SUBSCRIBED", "consented_at": PAST}}}
    resp, _ = one(server(BULK, bulk_subscription_body([subscriber(channels)])))
    assert_error(
        resp, 400, pointer="/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consented_at"
    )


def test_a_bulk_subscriber_needs_a_subscriptions_object() -> None:
    body = bulk_subscription_body([{"type": "profile", "attributes": {"email": "jane@example.com"}}])
    resp, _ = one(server(BULK, body))
    assert_error(resp, 400, pointer="/data/attributes/profiles/data/0/attributes/subscriptions")


def test_a_bulk_subscriber_with_an_unknown_attribute_is_400_naming_profile() -> None:
    body = bulk_subscription_body([subscriber(email="jane@example.com", last_name="Doe")])
    resp, _ = one(server(BULK, body))
    assert_error(
        resp,
        400,
        pointer="/data/attributes/profiles/data/0/attributes/last_name",
        detail="'last_name' is not a valid field for the resource 'profile'.",
    )


def test_a_bulk_subscriber_with_an_sms_channel_and_no_phone_is_400() -> None:
    resp, _ = one(server(BULK, bulk_subscription_body([subscriber(SMS_MARKETING)])))
    assert_error(
        resp,
        400,
        pointer="/data/attributes/profiles/data/0/attributes/phone_number",
        detail="'phone_number' must not be empty when the sms channel is included in 'subscriptions'.",
    )
