"""Parsing the connection's mapping settings: identity types, custom-field mappings, platforms."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mparticle_klaviyo.mapping.names import profile_field, valid_targets
from mparticle_klaviyo.mapping.settings import (
    MappingSettings,
    parse_consent_mapping,
    parse_custom_field,
    parse_email_identity,
    parse_phone_identifier,
    parse_platforms,
    parse_property_mapping,
)


def test_default_settings_use_email_and_mobile_number_and_the_ten_platforms() -> None:
    settings = MappingSettings()
    assert (settings.email_identity, settings.phone_identity, settings.server_mode) == ("email", "mobile_number", False)
    assert settings.supported_platforms == {
        "ios",
        "android",
        "mobileweb",
        "tvos",
        "roku",
        "customfeeds",
        "alexa",
        "smarttv",
        "firetv",
        "xbox",
    }
    assert (settings.list_id, settings.default_phone_region, settings.consent_mapping) == (None, None, {})


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("Email", "email"),
        ("email", "email"),
        ("Other", "other"),
        ("Other2", "other2"),
        ("Other 7", "other7"),
        ("OTHER10", "other10"),
        ("other_id_10", "other10"),
        ("other10", "other10"),
        ("Other_ID_3", "other3"),
    ],
)
def test_email_identity_types_accept_labels_and_wire_names(value: str, key: str) -> None:
    assert parse_email_identity(value) == key


@pytest.mark.parametrize("value", ["Other1", "Other11", "Mobile Number", "Customer ID", ""])
def test_other_email_identity_types_are_rejected(value: str) -> None:
    with pytest.raises(ValueError, match=r"^must be one of Email, Other, Other2 \.\.\. Other10$"):
        parse_email_identity(value)


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("Mobile Number", "mobile_number"),
        ("mobile_number", "mobile_number"),
        ("MobileNumber", "mobile_number"),
        ("Phone Number 2", "phone_number_2"),
        ("phone_number_2", "phone_number_2"),
        ("Phone Number 3", "phone_number_3"),
        ("PHONE_NUMBER_3", "phone_number_3"),
    ],
)
def test_phone_identifiers_accept_labels_and_wire_names(value: str, key: str) -> None:
    assert parse_phone_identifier(value) == key


@pytest.mark.parametrize("value", ["Phone Number 4", "Email", "Fax", ""])
def test_other_phone_identifiers_are_rejected(value: str) -> None:
    with pytest.raises(ValueError, match=r"^must be one of Mobile Number, Phone Number 2, Phone Number 3$"):
        parse_phone_identifier(value)


def test_a_custom_field_may_be_a_table() -> None:
    assert parse_custom_field({"a": " x ", "b": "y"}) == {"a": "x", "b": "y"}


def test_a_custom_field_may_be_mparticles_json_encoding() -> None:
    encoded = json.dumps(
        [
            {"jsmap": None, "map": "email_marketing", "maptype": "ConsentPurposes", "value": "email"},
            {"jsmap": None, "map": "sms_marketing", "maptype": "ConsentPurposes", "value": "sms"},
        ]
    )
    assert parse_custom_field(encoded) == {"email_marketing": "email", "sms_marketing": "sms"}


def test_a_custom_field_may_be_a_list_of_entries() -> None:
    assert parse_custom_field([{"map": "a", "value": "x"}]) == {"a": "x"}


def test_a_custom_field_may_be_a_json_object_string() -> None:
    assert parse_custom_field('{"a": "x"}') == {"a": "x"}


@pytest.mark.parametrize("value", ["", "   ", "[]", "{}", [], {}])
def test_an_empty_custom_field_is_an_empty_mapping(value: Any) -> None:
    assert parse_custom_field(value) == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[{", "is not valid JSON"),
        ("42", "must be a table, or a list of {map, maptype, value}"),
        (42, "must be a table, or a list of {map, maptype, value}"),
        ([{"value": "x"}], "each entry must be an object with string 'map' and 'value'"),
        (["a"], "each entry must be an object with string 'map' and 'value'"),
        ([{"map": "a", "value": ""}], "mapping values must be non-empty strings"),
        ([{"map": "a"}], "mapping values must be non-empty strings"),
        ({"a": 5}, "mapping values must be non-empty strings"),
    ],
)
def test_a_malformed_custom_field_is_rejected(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_custom_field(value)
    assert str(caught.value).startswith(message)


def test_consent_mapping_lower_cases_purposes_and_channels() -> None:
    assert parse_consent_mapping({"Email_Marketing": "EMAIL", "Web": "Web"}) == {
        "email_marketing": "email",
        "web": "web",
    }


@pytest.mark.parametrize("channel", ["email", "sms", "mobile", "web", "directmail"])
def test_consent_mapping_accepts_the_five_legacy_channels(channel: str) -> None:
    assert parse_consent_mapping({"p": channel}) == {"p": channel}


@pytest.mark.parametrize("purpose", ["data_sale_opt_out", "Data_Sale_Opt_Out"])
def test_consent_mapping_refuses_the_ccpa_opt_out_purpose(purpose: str) -> None:
    with pytest.raises(ValueError, match="opt-out of the sale of data, not a consent"):
        parse_consent_mapping({"email_marketing": "email", purpose: "directmail"})


def test_consent_mapping_rejects_other_channels() -> None:
    with pytest.raises(ValueError, match=r"^purpose 'p': channel must be one of email, sms, mobile, web, directmail$"):
        parse_consent_mapping({"p": "whatsapp"})


def test_property_mapping_accepts_legacy_and_current_target_names() -> None:
    mapping = parse_property_mapping({"Photo": "$image", "town": "location.city", "org": "organization"})
    assert mapping == {"photo": ("image",), "town": ("location", "city"), "org": ("organization",)}


def test_property_mapping_rejects_a_target_that_is_not_reserved() -> None:
    with pytest.raises(ValueError) as caught:
        parse_property_mapping({"photo": "$avatar"})
    assert str(caught.value).startswith(
        "attribute 'photo': '$avatar' is not a Klaviyo reserved property (one of $address1"
    )


def test_platforms_may_be_a_list_or_a_comma_separated_string() -> None:
    assert parse_platforms(["iOS", "Custom Feeds"]) == {"ios", "customfeeds"}
    assert parse_platforms("iOS, web,,") == {"ios", "mobileweb"}


@pytest.mark.parametrize("value", [5, None, ["iOS", 3], {"iOS": True}])
def test_platforms_of_another_shape_are_rejected(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^must be a list of platform names$"):
        parse_platforms(value)


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("$first_name", ("first_name",)),
        ("$FIRST_NAME", ("first_name",)),
        ("first_name", ("first_name",)),
        ("$region", ("location", "region")),
        ("location.region", ("location", "region")),
        (" location.zip ", ("location", "zip")),
        ("$external_id", ("external_id",)),
    ],
)
def test_profile_field_reads_legacy_and_current_names(target: str, path: tuple[str, ...]) -> None:
    assert profile_field(target) == path


@pytest.mark.parametrize("target", ["$email", "email", "phone_number", "location", "properties.x", "$state"])
def test_profile_field_refuses_identifiers_and_unknown_names(target: str) -> None:
    assert profile_field(target) is None


def test_valid_targets_lists_legacy_then_current_names() -> None:
    targets = valid_targets()
    assert (len(targets), targets[0], targets[-1]) == (32, "$address1", "title")
    assert "location.city" in targets and "$city" in targets
