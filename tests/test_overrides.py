"""Firehose account_settings (strings, camelCase ids) override the configured connection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mparticle_klaviyo.config import Connection, ConnectionSettings
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.overrides import connection_for_request, firehose_overrides, setting_name

CONFIGURED_KEY = "CFGKEY_7f3a9e"


def connection(**table: Any) -> Connection:
    table = {"public_api_key": CONFIGURED_KEY, **table}
    return Connection("main", ConnectionSettings.model_validate(table), table)


@pytest.mark.parametrize(
    ("setting_id", "name"),
    [
        ("publicApiKey", "public_api_key"),
        ("privateApiKey", "private_api_key"),
        ("externalEmailIdentityType", "external_email_identity_type"),
        ("externalIdIdentityType", "external_id_identity_type"),
        ("phoneIdentifier", "phone_identifier"),
        ("consentMapping", "consent_mapping"),
        ("propertyMapping", "property_mapping"),
        ("listId", "list_id"),
        ("defaultPhoneRegion", "default_phone_region"),
        ("list_id", "list_id"),
    ],
)
def test_camel_case_setting_ids_become_snake_case_names(setting_id: str, name: str) -> None:
    assert setting_name(setting_id) == name


def test_unknown_setting_ids_and_empty_values_are_not_overrides() -> None:
    overrides = firehose_overrides(
        {"apiKey": "x", "Example String Setting": "y", "listId": "", "phoneIdentifier": "Phone Number 2"}
    )
    assert overrides == {"phone_identifier": "Phone Number 2"}


def test_no_settings_keep_the_configured_connection() -> None:
    configured = connection()
    assert connection_for_request(configured, None) is configured
    assert connection_for_request(configured, {}) is configured


def test_identity_settings_override_the_configured_ones() -> None:
    effective = connection_for_request(
        connection(), {"externalEmailIdentityType": "Other10", "phoneIdentifier": "Phone Number 2"}
    )
    assert (effective.mapping.email_identity, effective.mapping.phone_identity) == ("other10", "phone_number_2")


@pytest.mark.parametrize(("value", "key"), [("Customer ID", "customer_id"), ("other_id_3", "other3"), ("MPID", "mpid")])
def test_the_external_id_identity_setting_overrides_the_configured_one(value: str, key: str) -> None:
    effective = connection_for_request(connection(external_id_identity_type="Other"), {"externalIdIdentityType": value})
    assert effective.mapping.external_id_identity == key


def test_an_empty_external_id_identity_setting_keeps_the_configured_one() -> None:
    effective = connection_for_request(connection(external_id_identity_type="Other"), {"externalIdIdentityType": ""})
    assert effective.mapping.external_id_identity == "other"


def test_a_bad_external_id_identity_setting_points_at_its_id_with_the_closest_name() -> None:
    with pytest.raises(InputError) as caught:
        connection_for_request(connection(), {"externalIdIdentityType": "CustomerIDs"})
    assert caught.value.pointer == "/account/account_settings/externalIdIdentityType"
    assert caught.value.message == (
        "must be one of Customer ID, Other, Other2 ... Other10, MPID (did you mean Customer ID?)"
    )


def test_mapping_settings_in_mparticle_custom_field_json_override_the_configured_ones() -> None:
    consent = [{"jsmap": None, "map": "Email_Marketing", "maptype": "ConsentPurposes", "value": "email"}]
    props = [{"jsmap": None, "map": "photo", "maptype": "UserAttributeClass.Name", "value": "$image"}]
    effective = connection_for_request(
        connection(consent_mapping={"sms_marketing": "sms"}),
        {"consentMapping": json.dumps(consent), "propertyMapping": json.dumps(props)},
    )
    assert effective.mapping.consent_mapping == {"email_marketing": "email"}
    assert effective.mapping.property_mapping == {"photo": ("image",)}


def test_the_list_id_setting_overrides_the_configured_one() -> None:
    effective = connection_for_request(connection(list_id="CFG"), {"listId": "Y6nRLr"})
    assert effective.mapping.list_id == "Y6nRLr"


def test_the_public_key_setting_overrides_the_configured_key() -> None:
    effective = connection_for_request(connection(), {"publicApiKey": "FHKEY_19c2"})
    assert effective.public_key.reveal() == "FHKEY_19c2"


def test_overrides_leave_the_configured_connection_unchanged() -> None:
    configured = connection(list_id="CFG")
    connection_for_request(configured, {"listId": "OTHER", "publicApiKey": "FHKEY_19c2"})
    assert (configured.mapping.list_id, configured.public_key.reveal()) == ("CFG", CONFIGURED_KEY)


def test_settings_the_request_does_not_send_keep_their_configured_values() -> None:
    effective = connection_for_request(connection(list_id="CFG", default_phone_region="GB"), {"listId": "NEW"})
    assert (effective.mapping.list_id, effective.mapping.default_phone_region) == ("NEW", "GB")


def test_a_bad_setting_is_an_input_error_pointing_at_its_id() -> None:
    with pytest.raises(InputError) as caught:
        connection_for_request(connection(), {"phoneIdentifier": "Fax"})
    assert caught.value.pointer == "/account/account_settings/phoneIdentifier"
    assert caught.value.message == "must be one of Mobile Number, Phone Number 2, Phone Number 3"


def test_a_blank_public_key_setting_is_rejected_without_showing_any_key() -> None:
    with pytest.raises(InputError) as caught:
        connection_for_request(connection(), {"publicApiKey": "   ", "listId": "L"})
    assert caught.value.pointer == "/account/account_settings/publicApiKey"
    assert caught.value.message == "must not be empty"
    assert CONFIGURED_KEY not in str(caught.value)


def test_a_bad_mapping_setting_names_the_problem_not_the_value() -> None:
    with pytest.raises(InputError) as caught:
        connection_for_request(connection(), {"consentMapping": "{not json SECRETISH_11"})
    assert caught.value.pointer == "/account/account_settings/consentMapping"
    assert caught.value.message.startswith("is not valid JSON")
    assert "SECRETISH_11" not in str(caught.value)


def test_a_request_cannot_override_urls_keys_or_ingest_credentials() -> None:
    from mparticle_klaviyo.overrides import firehose_overrides

    hostile = {
        "klaviyoUrl": "http://evil.example",
        "privateApiKey": "pk_evil",
        "firehoseToken": "t",
        "eventsApiSecret": "s",
        "webhookAuthorization": "w",
        "rateLimits": "{}",
        "revision": "2020-01-01",
        "listId": "L2",
    }
    assert firehose_overrides(hostile) == {"list_id": "L2"}
