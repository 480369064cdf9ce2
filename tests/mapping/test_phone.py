"""Phone numbers to E.164, with the region from a country attribute or a default."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mparticle_klaviyo.mapping.phone import region_for_country, to_e164

E164 = re.compile(r"^\+[1-9]\d{1,14}$")


@pytest.mark.parametrize(
    ("country", "region"),
    [
        ("US", "US"),
        ("us", "US"),
        (" de ", "DE"),
        ("USA", "US"),
        ("GBR", "GB"),
        ("deu", "DE"),
        ("Germany", "DE"),
        ("FRANCE", "FR"),
        ("United States", "US"),
        ("United Kingdom", "GB"),
        ("UK", "GB"),
        ("Russia", "RU"),
        ("South Korea", "KR"),
        ("Vietnam", "VN"),
    ],
)
def test_a_country_code_alpha3_code_or_name_gives_its_region(country: str, region: str) -> None:
    assert region_for_country(country) == region


@pytest.mark.parametrize("country", ["", "XX", "ZZZ", "Atlantis", "U.S.", "🇺🇸"])
def test_an_unknown_country_gives_no_region(country: str) -> None:
    assert region_for_country(country) is None


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("+15555550100", None, "+15555550100"),
        ("+1 (555) 555-0100", None, "+15555550100"),
        ("+1 555 555 0100", "GB", "+15555550100"),
        ("(555) 555-0100", "US", "+15555550100"),
        ("555.555.0100", "US", "+15555550100"),
        ("020 7946 0000", "GB", "+442079460000"),
        ("0049 30 1234567", "DE", "+49301234567"),
        ("011 44 20 7946 0000", "US", "+442079460000"),
        ("030 1234567", "DE", "+49301234567"),
        ("tel:+1-555-555-0100", None, "+15555550100"),
        ("+1 555 555 0100 ext. 12", None, "+15555550100"),
    ],
)
def test_numbers_are_normalised_to_e164(raw: str, region: str | None, expected: str) -> None:
    assert to_e164(raw, region) == expected


def test_a_national_number_without_a_region_cannot_be_normalised() -> None:
    assert to_e164("(555) 555-0100", None) is None


@pytest.mark.parametrize("raw", ["", "   ", "not a phone", "+1 555", "+0 123 456", "12", "+"])
def test_things_that_cannot_be_phone_numbers_give_none(raw: str) -> None:
    assert to_e164(raw, "US") is None


@given(st.text(max_size=40), st.sampled_from([None, "US", "GB", "DE", "IN", "BR", "JP", "AU"]))
def test_normalisation_gives_e164_or_none_for_any_text(raw: str, region: str | None) -> None:
    result = to_e164(raw, region)
    assert result is None or E164.match(result)


@given(
    st.text(alphabet="+0123456789 -().", min_size=1, max_size=24),
    st.sampled_from([None, "US", "GB", "DE", "FR", "IN", "CN", "BR"]),
)
def test_normalisation_gives_e164_or_none_for_any_phone_like_text(raw: str, region: str | None) -> None:
    result = to_e164(raw, region)
    assert result is None or E164.match(result)


def test_a_number_longer_than_e164_allows_is_left_out() -> None:
    # Found by hypothesis: phonenumbers calls this German number possible; it has 16 digits.
    assert to_e164("+4910000000000000", None) is None
