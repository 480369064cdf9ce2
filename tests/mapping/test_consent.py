"""Consent purposes -> Klaviyo subscriptions and the consent profile property; only grants are forwarded."""

from __future__ import annotations

from typing import Any

import pytest

from mparticle_klaviyo.mapping.result import Notice, Subscription, Unsubscription
from mparticle_klaviyo.mapping.settings import MappingSettings
from tests.mapping.builders import EMAIL, PHONE, T0, batch_doc, custom, gdpr, map_doc, metrics

MAPPING = {
    "email_marketing": "email",
    "sms_marketing": "sms",
    "push": "mobile",
    "web_tracking": "web",
    "letters": "directmail",
}
CLIENT = MappingSettings(consent_mapping=MAPPING, list_id="Y6nRLr")
BOTH = {"email": EMAIL, "mobile_number": PHONE}


def consent_doc(identities: dict[str, Any] | None = None, /, **purposes: bool) -> dict[str, Any]:
    return batch_doc(custom("Signed Up"), identities=identities or BOTH, consent=gdpr(**purposes))


@pytest.mark.parametrize(
    ("purpose", "channel"), [("email_marketing", "email"), ("sms_marketing", "sms"), ("push", "push")]
)
def test_a_granted_purpose_becomes_a_subscription_on_its_channel(purpose: str, channel: str) -> None:
    result = map_doc(consent_doc(**{purpose: True}), CLIENT)
    assert result.subscriptions == [Subscription(channels=(channel,), email=EMAIL, phone_number=PHONE, timestamp_ms=T0)]
    assert result.notices == []


def test_several_granted_purposes_become_one_subscription_in_purpose_order() -> None:
    result = map_doc(consent_doc(sms_marketing=True, email_marketing=True, push=True), CLIENT)
    assert result.subscriptions == [
        Subscription(channels=("sms", "email", "push"), email=EMAIL, phone_number=PHONE, timestamp_ms=T0)
    ]


def test_two_purposes_on_one_channel_subscribe_it_once() -> None:
    settings = MappingSettings(consent_mapping={"a": "email", "b": "email"}, list_id="L")
    result = map_doc(consent_doc(a=True, b=True), settings)
    assert result.subscriptions == [Subscription(channels=("email",), email=EMAIL, phone_number=PHONE, timestamp_ms=T0)]


def test_web_and_directmail_consent_become_the_consent_profile_property() -> None:
    result = map_doc(consent_doc(web_tracking=True, letters=True), CLIENT)
    assert result.subscriptions == []
    assert result.events[0].profile["properties"] == {"consent": ["web", "directmail"]}


def test_a_revoked_purpose_is_not_forwarded_and_is_reported() -> None:
    result = map_doc(consent_doc(email_marketing=False, web_tracking=False), CLIENT)
    assert result.subscriptions == []
    assert "properties" not in result.events[0].profile
    assert result.notices == [
        Notice(kind="dropped", reason="consent_removal_not_supported", consent="email_marketing", detail="email"),
        Notice(kind="dropped", reason="consent_removal_not_supported", consent="web_tracking", detail="web"),
    ]


def test_a_revocation_does_not_stop_the_events() -> None:
    assert metrics(map_doc(consent_doc(email_marketing=False), CLIENT)) == ["Signed Up"]


def test_unmapped_purposes_are_ignored() -> None:
    result = map_doc(consent_doc(analytics=True, cookies=False), CLIENT)
    assert (result.subscriptions, result.notices) == ([], [])


def test_without_a_consent_mapping_nothing_is_forwarded() -> None:
    result = map_doc(consent_doc(email_marketing=True), MappingSettings(list_id="L"))
    assert (result.subscriptions, result.notices) == ([], [])


def test_purposes_match_the_mapping_in_any_case() -> None:
    doc = batch_doc(custom(), identities=BOTH, consent={"gdpr": {"Email_Marketing": {"consented": True}}})
    settings = MappingSettings(consent_mapping={"email_marketing": "email"}, list_id="L")
    assert map_doc(doc, settings).subscriptions[0].channels == ("email",)


def ccpa(opted_out: bool) -> dict[str, Any]:
    """A batch ``consent_state`` with CCPA's one purpose (``consented: true`` = opted out of sale)."""
    return {"ccpa": {"data_sale_opt_out": {"consented": opted_out, "timestamp_unixtime_ms": T0}}}


def firehose_doc(consent_state: dict[str, Any]) -> dict[str, Any]:
    """A Firehose request for one user with both identities and the given consent state."""
    return {
        "type": "event_processing_request",
        "id": "req-1",
        "user_identities": [
            {"type": "email", "encoding": "raw", "value": EMAIL},
            {"type": "mobile_number", "encoding": "raw", "value": PHONE},
        ],
        "runtime_environment": {"type": "ios"},
        "consent_state": consent_state,
        "events": [{"type": "custom_event", "id": "e1", "name": "Signed Up", "timestamp_ms": T0}],
    }


CCPA_SHAPES = {
    "batch": lambda opted_out: batch_doc(custom("Signed Up"), identities=BOTH, consent=ccpa(opted_out)),
    "firehose": lambda opted_out: firehose_doc(
        {"ccpa_consent_state": {"data_sale_opt_out": {"consented": opted_out, "timestamp_unixtime_ms": T0}}}
    ),
}


@pytest.mark.parametrize("shape", sorted(CCPA_SHAPES))
@pytest.mark.parametrize("channel", ["email", "sms", "mobile", "web", "directmail"])
def test_a_ccpa_opt_out_is_never_a_granted_consent_even_when_mapped(shape: str, channel: str) -> None:
    # Only a MappingSettings built in code can hold this entry: parse_consent_mapping refuses it.
    settings = MappingSettings(consent_mapping={"data_sale_opt_out": channel}, list_id="L")
    result = map_doc(CCPA_SHAPES[shape](True), settings)
    assert result.subscriptions == []
    assert result.events[0].profile["properties"] == {"data_sale_opt_out": True}
    assert metrics(result) == ["Signed Up"]


@pytest.mark.parametrize("shape", sorted(CCPA_SHAPES))
@pytest.mark.parametrize("opted_out", [True, False])
def test_the_ccpa_state_is_the_data_sale_opt_out_profile_property(shape: str, opted_out: bool) -> None:
    result = map_doc(CCPA_SHAPES[shape](opted_out), CLIENT)
    assert (result.subscriptions, result.notices) == ([], [])
    assert result.events[0].profile["properties"] == {"data_sale_opt_out": opted_out}


def test_a_ccpa_opt_out_does_not_revoke_a_gdpr_grant() -> None:
    consent = {**gdpr(email_marketing=True), **ccpa(True)}
    result = map_doc(batch_doc(custom(), identities=BOTH, consent=consent), CLIENT)
    assert result.subscriptions == [Subscription(channels=("email",), email=EMAIL, phone_number=PHONE, timestamp_ms=T0)]
    assert result.events[0].profile["properties"] == {"data_sale_opt_out": True}


def test_gdpr_purposes_in_the_firehose_shape_are_read_like_the_batch_shape() -> None:
    state = {"gdpr_consent_state": {"Email_Marketing": {"consented": True}, "letters": {"consented": False}}}
    result = map_doc(firehose_doc(state), CLIENT)
    assert result.subscriptions == [Subscription(channels=("email",), email=EMAIL, phone_number=PHONE)]
    assert result.notices == [
        Notice(kind="dropped", reason="consent_removal_not_supported", consent="letters", detail="directmail")
    ]


def test_the_ccpa_property_replaces_a_user_attribute_of_that_name_with_a_warning() -> None:
    doc = batch_doc(custom(), identities=BOTH, attributes={"data_sale_opt_out": "no"}, consent=ccpa(True))
    result = map_doc(doc, CLIENT)
    assert result.events[0].profile["properties"] == {"data_sale_opt_out": True}
    assert result.notices == [
        Notice(
            kind="warning",
            reason="attribute_shadowed",
            detail="user attribute 'data_sale_opt_out' is shadowed by the CCPA consent state",
        )
    ]


def test_in_client_mode_without_a_list_id_subscriptions_are_dropped_per_channel() -> None:
    settings = MappingSettings(consent_mapping=MAPPING)
    result = map_doc(consent_doc(email_marketing=True, sms_marketing=True, web_tracking=True), settings)
    assert result.subscriptions == []
    assert result.notices == [
        Notice(kind="dropped", reason="consent_needs_list_id", consent="email"),
        Notice(kind="dropped", reason="consent_needs_list_id", consent="sms"),
    ]
    assert result.events[0].profile["properties"] == {"consent": ["web"]}
    assert metrics(result) == ["Signed Up"]


def test_in_server_mode_subscriptions_need_no_list_id() -> None:
    settings = MappingSettings(consent_mapping=MAPPING, server_mode=True)
    result = map_doc(consent_doc(email_marketing=True), settings)
    assert (result.subscriptions, result.notices) == (
        [Subscription(channels=("email",), email=EMAIL, phone_number=PHONE, timestamp_ms=T0)],
        [],
    )


def test_sms_consent_without_a_phone_is_dropped_but_email_consent_goes_on() -> None:
    result = map_doc(consent_doc({"email": EMAIL}, email_marketing=True, sms_marketing=True), CLIENT)
    assert result.subscriptions == [Subscription(channels=("email",), email=EMAIL, phone_number=None, timestamp_ms=T0)]
    assert result.notices == [
        Notice(kind="dropped", reason="consent_missing_identifier", consent="sms", detail="needs phone_number")
    ]


def test_email_consent_without_an_email_is_dropped() -> None:
    result = map_doc(consent_doc({"mobile_number": PHONE}, email_marketing=True, sms_marketing=True), CLIENT)
    assert result.subscriptions == [Subscription(channels=("sms",), email=None, phone_number=PHONE, timestamp_ms=T0)]
    assert result.notices == [
        Notice(kind="dropped", reason="consent_missing_identifier", consent="email", detail="needs email")
    ]


def test_push_consent_goes_with_a_phone_only_profile() -> None:
    result = map_doc(consent_doc({"mobile_number": PHONE}, push=True), CLIENT)
    assert result.subscriptions == [Subscription(channels=("push",), email=None, phone_number=PHONE, timestamp_ms=T0)]


def test_a_profile_without_email_or_phone_forwards_no_consent() -> None:
    result = map_doc(consent_doc({"customer_id": "c"}, email_marketing=True), CLIENT)
    assert result.subscriptions == []
    assert [n.reason for n in result.notices] == ["no_email_or_phone"]


def test_the_consent_property_replaces_a_custom_attribute_of_that_name() -> None:
    doc = batch_doc(custom(), identities=BOTH, attributes={"consent": "yes", "plan": "pro"}, consent=gdpr(letters=True))
    result = map_doc(doc, CLIENT)
    assert result.events[0].profile["properties"] == {"consent": ["directmail"], "plan": "pro"}
    assert result.notices == [
        Notice(
            kind="warning",
            reason="attribute_shadowed",
            detail="user attribute 'consent' is shadowed by the granted consent channels",
        )
    ]


# ----------------------------------------------------------------------------- consent removal

REMOVAL = MappingSettings(consent_mapping=MAPPING, list_id="Y6nRLr", server_mode=True, consent_removal=True)


def test_without_consent_removal_a_revocation_stays_unforwarded_in_server_mode() -> None:
    server = MappingSettings(consent_mapping=MAPPING, list_id="Y6nRLr", server_mode=True)
    result = map_doc(consent_doc(email_marketing=False), server)
    assert result.unsubscriptions == []
    assert [n.reason for n in result.notices] == ["consent_removal_not_supported"]


@pytest.mark.parametrize(("purpose", "channel"), [("email_marketing", "email"), ("sms_marketing", "sms")])
def test_with_consent_removal_a_revoked_email_or_sms_purpose_is_an_unsubscription(purpose: str, channel: str) -> None:
    result = map_doc(consent_doc(**{purpose: False}), REMOVAL)
    assert result.unsubscriptions == [
        Unsubscription(channels=(channel,), email=EMAIL, phone_number=PHONE, timestamp_ms=T0)
    ]
    assert result.subscriptions == [] and result.notices == []


def test_revoked_push_web_and_directmail_still_cannot_be_removed() -> None:
    # Klaviyo's bulk unsubscribe needs push tokens for push; web/directmail are not subscriptions.
    result = map_doc(consent_doc(push=False, web_tracking=False, letters=False), REMOVAL)
    assert result.unsubscriptions == []
    assert [(n.reason, n.detail) for n in result.notices] == [
        ("consent_removal_not_supported", "mobile"),
        ("consent_removal_not_supported", "web"),
        ("consent_removal_not_supported", "directmail"),
    ]


def test_grants_and_revocations_of_one_batch_go_their_own_ways() -> None:
    result = map_doc(consent_doc(email_marketing=True, sms_marketing=False), REMOVAL)
    assert [s.channels for s in result.subscriptions] == [("email",)]
    assert [u.channels for u in result.unsubscriptions] == [("sms",)]


def test_a_channel_granted_by_one_purpose_and_revoked_by_another_stays_granted() -> None:
    settings = MappingSettings(consent_mapping={"a": "email", "b": "email"}, server_mode=True, consent_removal=True)
    result = map_doc(consent_doc(a=True, b=False), settings)
    assert [s.channels for s in result.subscriptions] == [("email",)]
    assert result.unsubscriptions == []


def test_an_sms_revocation_without_a_phone_is_dropped_for_the_missing_identifier() -> None:
    result = map_doc(consent_doc({"email": EMAIL}, sms_marketing=False), REMOVAL)
    assert result.unsubscriptions == []
    assert [(n.reason, n.consent) for n in result.notices] == [("consent_missing_identifier", "sms")]


def test_the_ccpa_opt_out_is_never_an_unsubscription() -> None:
    doc = batch_doc(custom(), identities=BOTH, consent={"ccpa": {"data_sale_opt_out": {"consented": True}}})
    result = map_doc(doc, REMOVAL)
    assert result.unsubscriptions == [] and result.subscriptions == []
