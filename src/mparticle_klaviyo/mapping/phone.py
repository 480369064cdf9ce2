"""Phone numbers to E.164, with the region taken from a country attribute or a default."""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers
from iso3166 import (
    countries_by_alpha2,
    countries_by_alpha3,
    countries_by_apolitical_name,
    countries_by_name,
)

# Everyday names that differ from ISO 3166's official and "apolitical" names.
_E164 = re.compile(r"\+[1-9]\d{1,14}")
_COUNTRY_ALIASES = {
    "UNITED STATES": "US",
    "UNITED KINGDOM": "GB",
    "UK": "GB",
    "GREAT BRITAIN": "GB",
    "ENGLAND": "GB",
    "RUSSIA": "RU",
    "SOUTH KOREA": "KR",
    "NORTH KOREA": "KP",
    "VIETNAM": "VN",
    "IRAN": "IR",
    "SYRIA": "SY",
    "BOLIVIA": "BO",
    "VENEZUELA": "VE",
    "TANZANIA": "TZ",
    "MOLDOVA": "MD",
    "LAOS": "LA",
    "CZECH REPUBLIC": "CZ",
    "TURKEY": "TR",
}


@lru_cache(maxsize=1024)
def region_for_country(country: str) -> str | None:
    """ISO 3166-1 alpha-2 code for an alpha-2 code, alpha-3 code or country name, else None."""
    key = country.strip().upper()
    if len(key) == 2 and key in countries_by_alpha2:
        return key
    for table in (countries_by_alpha3, countries_by_name, countries_by_apolitical_name):
        found = table.get(key)
        if found is not None:
            return str(found.alpha2)
    return _COUNTRY_ALIASES.get(key)


@lru_cache(maxsize=65536)
def to_e164(raw: str, region: str | None) -> str | None:
    """The number in E.164 form, or None when it cannot be a phone number.

    A number with a leading ``+`` (or ``00``) needs no region; a national number needs one.
    We accept every *possible* number (right length for its region) rather than only numbers
    in allocated ranges, so test ranges such as +1 555 01xx survive; Klaviyo checks E.164 form.
    """
    try:
        parsed = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    e164 = str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    # phonenumbers calls some over-long numbers possible (+49 with 14 national digits): E.164
    # allows 15 digits in all, and Klaviyo refuses more.
    return e164 if _E164.fullmatch(e164) else None
