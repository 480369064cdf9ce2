"""A connection's mapping settings, already validated and normalised, as the mapper reads them."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from mparticle_klaviyo.mapping.names import FieldPath, profile_field, valid_targets
from mparticle_klaviyo.mparticle.names import DEFAULT_SUPPORTED_PLATFORMS, canonical_platform

EMAIL_IDENTITY_TYPES = {"email": "email", "other": "other"} | {f"other{n}": f"other{n}" for n in range(2, 11)}
PHONE_IDENTIFIERS = {
    "mobilenumber": "mobile_number",
    "phonenumber2": "phone_number_2",
    "phonenumber3": "phone_number_3",
}
# Identities whose value can be Klaviyo's ``external_id`` (the user id peers map), by squashed name.
EXTERNAL_ID_IDENTITY_TYPES = {"customerid": "customer_id", "customer": "customer_id", "mpid": "mpid"} | {
    key: key for key in ("other", *(f"other{n}" for n in range(2, 11)))
}
# The names mParticle's UI shows for them, for messages and suggestions.
EXTERNAL_ID_IDENTITY_NAMES = ("Customer ID", "Other", *(f"Other{n}" for n in range(2, 11)), "MPID")
CONSENT_CHANNELS = ("email", "sms", "mobile", "web", "directmail")
# CCPA's only purpose; ``consented: true`` means the user opted OUT of the sale of their data.
CCPA_PURPOSE = "data_sale_opt_out"


class MappingSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the pure mapper needs from a connection (no secrets)."""

    email_identity: str = "email"
    phone_identity: str = "mobile_number"
    external_id_identity: str | None = None  # an identity key, or "mpid"
    consent_mapping: dict[str, str] = {}
    property_mapping: dict[str, FieldPath] = {}
    metric_names: dict[str, str] = {}
    supported_platforms: frozenset[str] = frozenset(canonical_platform(p) for p in DEFAULT_SUPPORTED_PLATFORMS)
    default_phone_region: str | None = None
    list_id: str | None = None
    server_mode: bool = False
    # Revoked email/SMS purposes become Klaviyo unsubscriptions (needs the private key).
    consent_removal: bool = False


def squash(text: str) -> str:
    """A setting value compared without case, spaces or punctuation: ``Other ID 3`` -> ``otherid3``."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def parse_email_identity(value: str) -> str:
    """``Email``/``Other``/``Other2``..``Other10`` (or ``other_id_2`` ...) -> identity key."""
    key = squash(value).replace("otherid", "other")
    if key in EMAIL_IDENTITY_TYPES:
        return EMAIL_IDENTITY_TYPES[key]
    raise ValueError("must be one of Email, Other, Other2 ... Other10")


def parse_phone_identifier(value: str) -> str:
    """``Mobile Number``/``Phone Number 2``/``Phone Number 3`` (or wire names) -> identity key."""
    key = squash(value)
    if key in PHONE_IDENTIFIERS:
        return PHONE_IDENTIFIERS[key]
    raise ValueError("must be one of Mobile Number, Phone Number 2, Phone Number 3")


def parse_external_id_identity(value: str) -> str:
    """``Customer ID``/``Other``..``Other10``/``MPID`` (or ``customer_id``, ``other_id_3`` ...) -> identity key."""
    key = squash(value).replace("otherid", "other")
    if key in EXTERNAL_ID_IDENTITY_TYPES:
        return EXTERNAL_ID_IDENTITY_TYPES[key]
    raise ValueError("must be one of Customer ID, Other, Other2 ... Other10, MPID")


def parse_custom_field(value: Any) -> dict[str, str]:
    """A mapping given as a table, or in mParticle's custom-field encoding.

    The custom-field encoding is a list (or a JSON string of a list) of
    ``{"map": <mParticle side>, "maptype": ..., "value": <partner side>}``.
    """
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.strip() else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"is not valid JSON ({exc.msg})") from None
    if isinstance(value, dict):
        return {str(k): _text(v) for k, v in value.items()}
    if isinstance(value, list):
        return dict(_custom_field_entry(entry) for entry in value)
    raise ValueError("must be a table, or a list of {map, maptype, value}")


def _custom_field_entry(entry: Any) -> tuple[str, str]:
    if not isinstance(entry, dict) or not isinstance(entry.get("map"), str):
        raise ValueError("each entry must be an object with string 'map' and 'value'")
    return entry["map"], _text(entry.get("value"))


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("mapping values must be non-empty strings")
    return value.strip()


def parse_consent_mapping(value: Any) -> dict[str, str]:
    """mParticle purpose (lower-cased) -> Klaviyo consent channel."""
    mapping = parse_custom_field(value)
    for purpose, channel in mapping.items():
        if purpose.lower() == CCPA_PURPOSE:
            # Mapping it would turn an opt-out into a grant; it is forwarded as a profile property instead.
            raise ValueError(
                f"purpose {purpose!r} is CCPA's opt-out of the sale of data, not a consent: it cannot be"
                f" mapped to a channel (it is sent as the profile property {CCPA_PURPOSE})"
            )
        if channel.lower() not in CONSENT_CHANNELS:
            raise ValueError(f"purpose {purpose!r}: channel must be one of {', '.join(CONSENT_CHANNELS)}")
    return {purpose.lower(): channel.lower() for purpose, channel in mapping.items()}


def parse_property_mapping(value: Any) -> dict[str, FieldPath]:
    """mParticle user attribute (lower-cased) -> Klaviyo reserved profile field."""
    result: dict[str, FieldPath] = {}
    for attribute, target in parse_custom_field(value).items():
        path = profile_field(target)
        if path is None:
            raise ValueError(
                f"attribute {attribute!r}: {target!r} is not a Klaviyo reserved property "
                f"(one of {', '.join(valid_targets())})"
            )
        result[attribute.lower()] = path
    return result


def parse_platforms(value: Any) -> frozenset[str]:
    """A list (or comma-separated string) of platform names -> canonical platform keys."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
        raise ValueError("must be a list of platform names")
    return frozenset(canonical_platform(i) for i in items if i.strip())
