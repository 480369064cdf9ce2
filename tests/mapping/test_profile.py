"""User identities and attributes -> the Klaviyo profile attributes."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mparticle_klaviyo.mapping.names import KLAVIYO_RESERVED, FieldPath
from mparticle_klaviyo.mapping.profile import build_profile
from mparticle_klaviyo.mapping.result import MappedBatch, Notice
from mparticle_klaviyo.mapping.settings import MappingSettings
from mparticle_klaviyo.mparticle.model import UserBatch

EMAIL = {"email": "jane@example.com"}


def profile_of(
    identities: dict[str, str] | None = None,
    attributes: dict[str, Any] | None = None,
    settings: MappingSettings | None = None,
) -> tuple[dict[str, Any], list[Notice]]:
    batch = UserBatch(
        source="batch", identities=EMAIL if identities is None else identities, user_attributes=attributes or {}
    )
    out = MappedBatch()
    return build_profile(batch, settings or MappingSettings(), out), out.notices


def field(profile: dict[str, Any], path: FieldPath) -> Any:
    value: Any = profile
    for part in path:
        value = value[part]
    return value


def test_the_email_comes_from_the_email_identity_by_default() -> None:
    assert profile_of({"email": "jane@example.com", "other": "x@example.com"}) == ({"email": "jane@example.com"}, [])


@pytest.mark.parametrize("identity", ["other", "other2", "other5", "other10"])
def test_the_email_comes_from_the_configured_identity_type(identity: str) -> None:
    profile, _ = profile_of(
        {"email": "no@example.com", identity: "yes@example.com"}, settings=MappingSettings(email_identity=identity)
    )
    assert profile == {"email": "yes@example.com"}


def test_the_email_is_trimmed() -> None:
    assert profile_of({"email": "  jane@example.com \n"})[0] == {"email": "jane@example.com"}


@pytest.mark.parametrize("bad", ["jane", "jane@", "@example.com", "jane@example", "ja ne@example.com", "a@b@c.com"])
def test_something_that_is_not_an_email_is_left_out_with_a_warning(bad: str) -> None:
    profile, notices = profile_of({"email": bad})
    assert profile == {}
    assert notices == [
        Notice(kind="warning", reason="invalid_email", detail="identity 'email' is not an email address")
    ]


def test_the_phone_comes_from_mobile_number_by_default_in_e164() -> None:
    assert profile_of({"mobile_number": "+1 (555) 555-0100"})[0] == {"phone_number": "+15555550100"}


@pytest.mark.parametrize("identity", ["phone_number_2", "phone_number_3"])
def test_the_phone_comes_from_the_configured_identity(identity: str) -> None:
    settings = MappingSettings(phone_identity=identity)
    profile, _ = profile_of({"mobile_number": "+15555550100", identity: "+442079460000"}, settings=settings)
    assert profile["phone_number"] == "+442079460000"


@pytest.mark.parametrize(
    ("name", "country"),
    [("$Country", "GB"), ("$country", "GBR"), ("$COUNTRY", "United Kingdom"), ("$Country", " gb ")],
)
def test_a_national_phone_uses_the_country_attribute_for_its_region(name: str, country: str) -> None:
    profile, notices = profile_of({"mobile_number": "020 7946 0000"}, {name: country})
    assert (profile["phone_number"], notices) == ("+442079460000", [])


def test_a_national_phone_uses_the_default_region_without_a_country() -> None:
    profile, _ = profile_of({"mobile_number": "030 1234567"}, settings=MappingSettings(default_phone_region="DE"))
    assert profile["phone_number"] == "+49301234567"


def test_the_country_attribute_wins_over_the_default_region() -> None:
    settings = MappingSettings(default_phone_region="DE")
    profile, _ = profile_of({"mobile_number": "020 7946 0000"}, {"$Country": "GB"}, settings)
    assert profile["phone_number"] == "+442079460000"


def test_an_unknown_country_falls_back_to_the_default_region() -> None:
    settings = MappingSettings(default_phone_region="US")
    profile, _ = profile_of({"mobile_number": "(555) 555-0100"}, {"$Country": "Atlantis"}, settings)
    assert profile["phone_number"] == "+15555550100"


@pytest.mark.parametrize("bad", ["555-0100", "call me", "(555) 555-0100", "+1 23"])
def test_an_unparseable_phone_is_left_out_with_a_warning(bad: str) -> None:
    profile, notices = profile_of({"email": "jane@example.com", "mobile_number": bad})
    assert profile == {"email": "jane@example.com"}
    assert notices == [
        Notice(kind="warning", reason="invalid_phone", detail="identity 'mobile_number' is not a phone number")
    ]


def test_a_phone_in_another_identity_than_the_configured_one_is_ignored() -> None:
    assert profile_of({"email": "jane@example.com", "phone_number_2": "+15555550100"}) == (
        {"email": "jane@example.com"},
        [],
    )


@pytest.mark.parametrize(
    ("name", "path"),
    [
        ("$FirstName", ("first_name",)),
        ("$LastName", ("last_name",)),
        ("$City", ("location", "city")),
        ("$State", ("location", "region")),
        ("$Country", ("location", "country")),
        ("$Zip", ("location", "zip")),
        ("$Address", ("location", "address1")),
        ("$firstname", ("first_name",)),
        ("$lastname", ("last_name",)),
        ("$state", ("location", "region")),
        ("$address", ("location", "address1")),
        ("$ZIP", ("location", "zip")),
    ],
)
def test_mparticle_reserved_attributes_become_profile_fields_in_any_case(name: str, path: FieldPath) -> None:
    profile, _ = profile_of(attributes={name: "value"})
    assert field(profile, path) == "value"
    assert "properties" not in profile


@pytest.mark.parametrize(("name", "path"), sorted(KLAVIYO_RESERVED.items()))
def test_klaviyo_reserved_names_become_their_profile_fields(name: str, path: FieldPath) -> None:
    profile, _ = profile_of(attributes={name: "value"})
    assert field(profile, path) == "value"
    assert "properties" not in profile


def test_the_sixteen_klaviyo_reserved_names_are_all_known() -> None:
    assert set(KLAVIYO_RESERVED) == {
        "$first_name",
        "$last_name",
        "$city",
        "$region",
        "$country",
        "$zip",
        "$image",
        "$organization",
        "$title",
        "$address1",
        "$address2",
        "$latitude",
        "$longitude",
        "$timezone",
        "$ip",
        "$external_id",
    }


def test_klaviyo_reserved_names_match_in_any_case() -> None:
    assert profile_of(attributes={"$FIRST_NAME": "Jane", "$Image": "https://x/y.png"})[0] == {
        "email": "jane@example.com",
        "first_name": "Jane",
        "image": "https://x/y.png",
    }


def test_a_full_profile_nests_location_fields() -> None:
    attributes = {
        "$FirstName": "Jane",
        "$LastName": "Doe",
        "$City": "Boston",
        "$State": "MA",
        "$Country": "US",
        "$Zip": "02110",
        "$Address": "1 Main St",
        "$address2": "Apt 2",
        "$latitude": 42.36,
        "$longitude": -71.06,
        "$timezone": "America/New_York",
        "$organization": "Acme",
        "$title": "Buyer",
    }
    assert profile_of(attributes=attributes)[0] == {
        "email": "jane@example.com",
        "first_name": "Jane",
        "last_name": "Doe",
        "organization": "Acme",
        "title": "Buyer",
        "location": {
            "city": "Boston",
            "region": "MA",
            "country": "US",
            "zip": "02110",
            "address1": "1 Main St",
            "address2": "Apt 2",
            "latitude": 42.36,
            "longitude": -71.06,
            "timezone": "America/New_York",
        },
    }


def test_property_mapping_sends_a_custom_attribute_to_a_reserved_field() -> None:
    settings = MappingSettings(property_mapping={"photo_url": ("image",), "town": ("location", "city")})
    profile, _ = profile_of(attributes={"Photo_URL": "https://x/y.png", "town": "Boston"}, settings=settings)
    assert profile == {"email": "jane@example.com", "image": "https://x/y.png", "location": {"city": "Boston"}}


def test_property_mapping_overrides_an_mparticle_reserved_name() -> None:
    settings = MappingSettings(property_mapping={"$state": ("location", "address2")})
    profile, _ = profile_of(attributes={"$State": "MA"}, settings=settings)
    assert profile["location"] == {"address2": "MA"}


def test_property_mapping_overrides_a_klaviyo_reserved_name() -> None:
    settings = MappingSettings(property_mapping={"$title": ("organization",)})
    profile, _ = profile_of(attributes={"$title": "Acme"}, settings=settings)
    assert (profile.get("organization"), profile.get("title")) == ("Acme", None)


def test_other_attributes_become_custom_properties_without_a_leading_dollar() -> None:
    attributes = {"$Gender": "F", "$Age": "34", "plan": "pro", "$$double": 1, "mid$dle": 2}
    profile, _ = profile_of(attributes=attributes)
    assert profile["properties"] == {"Gender": "F", "Age": "34", "plan": "pro", "$double": 1, "mid$dle": 2}


def test_custom_properties_keep_numbers_lists_objects_and_nulls() -> None:
    attributes = {"score": 1.5, "visits": 3, "tags": ["a", "b"], "prefs": {"a": True}, "gone": None, "vip": False}
    assert profile_of(attributes=attributes)[0]["properties"] == attributes


def test_a_number_for_a_text_field_is_sent_as_text() -> None:
    profile, notices = profile_of(attributes={"$Zip": 2110, "$first_name": 7.5})
    assert (profile["location"], profile["first_name"], notices) == ({"zip": "2110"}, "7.5", [])


def test_latitude_and_longitude_stay_numbers() -> None:
    profile, _ = profile_of(attributes={"$latitude": 42.36, "$longitude": "-71.06"})
    assert profile["location"] == {"latitude": 42.36, "longitude": "-71.06"}


@pytest.mark.parametrize("value", [None, True, ["Boston"], {"name": "Boston"}, ""])
def test_a_reserved_attribute_without_a_text_value_is_left_out_with_a_warning(value: Any) -> None:
    profile, notices = profile_of(attributes={"$City": value})
    assert profile == {"email": "jane@example.com"}
    assert notices == [
        Notice(
            kind="warning",
            reason="invalid_attribute",
            detail="user attribute '$City' is not a text value for location.city",
        )
    ]


def test_a_profile_without_custom_attributes_has_no_properties_object() -> None:
    assert "properties" not in profile_of(attributes={"$FirstName": "Jane"})[0]


def test_odd_unicode_attributes_are_kept_as_they_are() -> None:
    attributes = {"$FirstName": "יעל", "note": "🎉\u0000\u202e", "город": "Москва"}
    profile, _ = profile_of(attributes=attributes)
    assert (profile["first_name"], profile["properties"]) == ("יעל", {"note": "🎉\u0000\u202e", "город": "Москва"})


# Sources of one profile field, best first: a mapped attribute, Klaviyo's exact spelling, other
# cases of it, then mParticle's spellings; ties go to the lower attribute name (code points).
FIRST_NAME_SOURCES = ["nickname", "$first_name", "$FIRST_NAME", "$First_Name", "$FirstName", "$firstname"]
CITY_SOURCES = ["favorite_town", "$city", "$CITY", "$City"]
REGION_SOURCES = ["home_state", "$region", "$Region", "$STATE", "$State", "$state"]
RANKED = [(FIRST_NAME_SOURCES, ("first_name",)), (CITY_SOURCES, ("location", "city"))]
RANKED.append((REGION_SOURCES, ("location", "region")))
MAPPED = MappingSettings(
    property_mapping={
        "nickname": ("first_name",),
        "favorite_town": ("location", "city"),
        "home_state": ("location", "region"),
    }
)


def ranked_pairs() -> list[tuple[str, str, FieldPath]]:
    """Every ordered pair of two sources of one field: (first in the JSON, second, field)."""
    return [(first, second, path) for sources, path in RANKED for first, second in itertools.permutations(sources, 2)]


@pytest.mark.parametrize(("first", "second", "path"), ranked_pairs())
def test_the_better_source_wins_a_profile_field_whatever_the_key_order(
    first: str, second: str, path: FieldPath
) -> None:
    sources = next(s for s, p in RANKED if p == path)
    winner, loser = sorted((first, second), key=sources.index)
    profile, notices = profile_of(attributes={first: first, second: second}, settings=MAPPED)
    assert field(profile, path) == winner
    assert "properties" not in profile
    assert notices == [
        Notice(
            kind="warning",
            reason="attribute_shadowed",
            detail=f"user attribute {loser!r} is shadowed by {winner!r} for {'.'.join(path)}",
        )
    ]


@given(st.permutations(FIRST_NAME_SOURCES + CITY_SOURCES), st.integers(2, len(FIRST_NAME_SOURCES + CITY_SOURCES)))
def test_any_mix_of_sources_in_any_order_gives_the_same_profile(order: list[str], count: int) -> None:
    names = order[:count]
    forward = profile_of(attributes={n: n for n in names}, settings=MAPPED)
    backward = profile_of(attributes={n: n for n in reversed(names)}, settings=MAPPED)
    assert forward[0] == backward[0]
    assert sorted(map(repr, forward[1])) == sorted(map(repr, backward[1]))


@pytest.mark.parametrize("reverse", [False, True])
def test_a_mapped_attribute_wins_over_a_reserved_one_in_either_order(reverse: bool) -> None:
    settings = MappingSettings(property_mapping={"favorite_town": ("location", "city")})
    items = [("favorite_town", "Paris"), ("$city", "Boston")]
    profile, _ = profile_of(attributes=dict(reversed(items) if reverse else items), settings=settings)
    assert profile["location"] == {"city": "Paris"}


@pytest.mark.parametrize("reverse", [False, True])
def test_an_invalid_better_source_falls_back_to_the_next_one(reverse: bool) -> None:
    items = [("$first_name", ""), ("$FirstName", "Jane")]
    profile, notices = profile_of(attributes=dict(reversed(items) if reverse else items))
    assert profile["first_name"] == "Jane"
    assert [n.reason for n in notices] == ["invalid_attribute"]


@pytest.mark.parametrize("reverse", [False, True])
def test_an_attribute_named_like_a_trimmed_one_wins_over_it(reverse: bool) -> None:
    items = [("plan", "kept"), ("$plan", "lost")]
    profile, notices = profile_of(attributes=dict(reversed(items) if reverse else items))
    assert profile["properties"] == {"plan": "kept"}
    assert notices == [
        Notice(kind="warning", reason="attribute_shadowed", detail="user attribute '$plan' is shadowed by 'plan'")
    ]


@pytest.mark.parametrize("reverse", [False, True])
def test_the_phone_region_comes_from_the_country_that_wins(reverse: bool) -> None:
    items = [("$country", "GB"), ("$Country", "US")]
    profile, _ = profile_of({"mobile_number": "020 7946 0000"}, dict(reversed(items) if reverse else items))
    assert (profile["phone_number"], profile["location"]) == ("+442079460000", {"country": "GB"})


def test_the_phone_region_follows_a_mapped_country_attribute() -> None:
    settings = MappingSettings(property_mapping={"pays": ("location", "country")})
    profile, _ = profile_of({"mobile_number": "06 12 34 56 78"}, {"pays": "FR"}, settings)
    assert profile["phone_number"] == "+33612345678"


def test_no_external_id_is_sent_unless_an_identity_is_configured_for_it() -> None:
    profile, _ = profile_of({**EMAIL, "customer_id": "cust-42", "other": "o-1"})
    assert "external_id" not in profile


@pytest.mark.parametrize(
    ("identity", "identities"),
    [
        ("customer_id", {"customer_id": "cust-42", "other": "no"}),
        ("other", {"other": "cust-42", "customer_id": "no"}),
        ("other3", {"other3": "cust-42", "other": "no"}),
        ("other10", {"other10": "cust-42"}),
    ],
)
def test_the_configured_identity_is_sent_as_the_external_id_beside_the_email(
    identity: str, identities: dict[str, str]
) -> None:
    settings = MappingSettings(external_id_identity=identity)
    assert profile_of({**EMAIL, **identities}, settings=settings) == (
        {"email": "jane@example.com", "external_id": "cust-42"},
        [],
    )


def test_the_mpid_can_be_the_external_id() -> None:
    batch = UserBatch(source="batch", identities={"mobile_number": "+15555550100"}, mpid="1234567890123456789")
    profile = build_profile(batch, MappingSettings(external_id_identity="mpid"), MappedBatch())
    assert profile == {"phone_number": "+15555550100", "external_id": "1234567890123456789"}


@pytest.mark.parametrize("value", ["", "   "])
def test_a_blank_external_id_identity_is_left_out(value: str) -> None:
    profile, notices = profile_of(
        {**EMAIL, "customer_id": value}, settings=MappingSettings(external_id_identity="customer_id")
    )
    assert (profile, notices) == ({"email": "jane@example.com"}, [])


def test_the_external_id_is_trimmed() -> None:
    profile, _ = profile_of(
        {**EMAIL, "customer_id": " cust-42\n"}, settings=MappingSettings(external_id_identity="customer_id")
    )
    assert profile["external_id"] == "cust-42"


def test_the_configured_identity_wins_over_an_external_id_attribute() -> None:
    settings = MappingSettings(external_id_identity="customer_id")
    profile, notices = profile_of({**EMAIL, "customer_id": "cust-42"}, {"$External_ID": "old-7"}, settings)
    assert profile == {"email": "jane@example.com", "external_id": "cust-42"}
    assert notices == [
        Notice(
            kind="warning",
            reason="attribute_shadowed",
            detail="user attribute '$External_ID' is shadowed by identity 'customer_id' for external_id",
        )
    ]


def test_an_external_id_attribute_with_the_same_value_is_not_reported() -> None:
    settings = MappingSettings(external_id_identity="customer_id")
    profile, notices = profile_of({**EMAIL, "customer_id": "42"}, {"$external_id": 42}, settings)
    assert (profile, notices) == ({"email": "jane@example.com", "external_id": "42"}, [])


def test_the_external_id_attribute_stays_when_the_configured_identity_is_absent() -> None:
    settings = MappingSettings(external_id_identity="customer_id")
    profile, notices = profile_of(EMAIL, {"$external_id": "old-7"}, settings)
    assert (profile, notices) == ({"email": "jane@example.com", "external_id": "old-7"}, [])
