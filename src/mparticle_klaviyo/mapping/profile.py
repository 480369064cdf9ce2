"""User identities and attributes -> the Klaviyo profile ``attributes`` object."""

from __future__ import annotations

import re
from typing import Any

from mparticle_klaviyo.mapping.names import DEFAULT_ATTRIBUTE_FIELDS, NUMERIC_FIELDS, FieldPath
from mparticle_klaviyo.mapping.phone import region_for_country, to_e164
from mparticle_klaviyo.mapping.result import (
    INVALID_ATTRIBUTE,
    INVALID_EMAIL,
    INVALID_PHONE,
    MappedBatch,
)
from mparticle_klaviyo.mapping.settings import MappingSettings
from mparticle_klaviyo.mparticle.model import UserBatch

# Klaviyo rejects malformed emails with a 400; a light check keeps such a request from being sent.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def build_profile(batch: UserBatch, settings: MappingSettings, out: MappedBatch) -> dict[str, Any]:
    """The profile attributes: identifiers, reserved fields and custom ``properties``."""
    profile: dict[str, Any] = {}
    email = _email(batch, settings, out)
    if email:
        profile["email"] = email
    phone = _phone(batch, settings, out)
    if phone:
        profile["phone_number"] = phone
    custom: dict[str, Any] = {}
    for name, value in batch.user_attributes.items():
        _place_attribute(name, value, settings, profile, custom, out)
    if custom:
        profile["properties"] = custom
    return profile


def _email(batch: UserBatch, settings: MappingSettings, out: MappedBatch) -> str | None:
    """The email from the configured identity type, if it looks like one."""
    email = batch.identities.get(settings.email_identity)
    if email is None:
        return None
    email = email.strip()
    if _EMAIL.match(email):
        return email
    out.warn(INVALID_EMAIL, detail=f"identity {settings.email_identity!r} is not an email address")
    return None


def _phone(batch: UserBatch, settings: MappingSettings, out: MappedBatch) -> str | None:
    """The phone from the configured identity, in E.164, or None (reported) when unparseable."""
    raw = batch.identities.get(settings.phone_identity)
    if raw is None:
        return None
    e164 = to_e164(raw, _phone_region(batch, settings))
    if e164 is None:
        out.warn(INVALID_PHONE, detail=f"identity {settings.phone_identity!r} is not a phone number")
    return e164


def _phone_region(batch: UserBatch, settings: MappingSettings) -> str | None:
    """Region for national numbers: the user's ``$country`` attribute, else the default region."""
    for name, value in batch.user_attributes.items():
        if name.lower() == "$country" and isinstance(value, str):
            region = region_for_country(value)
            if region:
                return region
    return settings.default_phone_region


def _place_attribute(
    name: str,
    value: Any,
    settings: MappingSettings,
    profile: dict[str, Any],
    custom: dict[str, Any],
    out: MappedBatch,
) -> None:
    """Put one attribute where it belongs: property_mapping, reserved names, else custom."""
    key = name.lower()
    path = settings.property_mapping.get(key) or DEFAULT_ATTRIBUTE_FIELDS.get(key)
    if path is None:
        custom[name[1:] if name.startswith("$") else name] = value
        return
    field_value = _field_value(path, value)
    if field_value is None:
        out.warn(
            INVALID_ATTRIBUTE,
            detail=f"user attribute {name!r} is not a text value for {'.'.join(path)}",
        )
        return
    _set_path(profile, path, field_value)


def _field_value(path: FieldPath, value: Any) -> str | float | None:
    """Reserved fields take strings (latitude and longitude also numbers)."""
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        return None
    if isinstance(value, int | float):
        return value if path in NUMERIC_FIELDS else str(value)
    text = str(value)
    return text or None


def _set_path(profile: dict[str, Any], path: FieldPath, value: str | float) -> None:
    target = profile
    for part in path[:-1]:
        target = target.setdefault(part, {})
    target[path[-1]] = value
