"""User identities and attributes -> the Klaviyo profile ``attributes`` object."""

from __future__ import annotations

import re
from typing import Any

from mparticle_klaviyo.mapping.names import DEFAULT_ATTRIBUTE_FIELDS, KLAVIYO_RESERVED, NUMERIC_FIELDS, FieldPath
from mparticle_klaviyo.mapping.phone import region_for_country, to_e164
from mparticle_klaviyo.mapping.result import (
    ATTRIBUTE_SHADOWED,
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
    fields, custom = _place_attributes(batch.user_attributes, settings, out)
    phone = _phone(batch, settings, fields, out)
    if phone:
        profile["phone_number"] = phone
    external_id = _external_id(batch, settings)
    if external_id:
        _shadow_external_id_attribute(batch, settings, fields, external_id, out)
        profile["external_id"] = external_id
    profile.update(fields)
    if custom:
        profile["properties"] = custom
    return profile


def subject_identifiers(identities: dict[str, str], settings: MappingSettings) -> tuple[str | None, str | None]:
    """The email and E.164 phone that name a person to Klaviyo (an erasure's subject), or None each.

    Read as a batch's are: the configured identity types, the email checked, the phone in the
    default region (an erasure has no attributes to say the user's country).
    """
    email = identities.get(settings.email_identity, "").strip()
    raw_phone = identities.get(settings.phone_identity)
    phone = to_e164(raw_phone, settings.default_phone_region) if raw_phone else None
    return (email if _EMAIL.match(email) else None), phone


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


def _phone(batch: UserBatch, settings: MappingSettings, fields: dict[str, Any], out: MappedBatch) -> str | None:
    """The phone from the configured identity, in E.164, or None (reported) when unparseable."""
    raw = batch.identities.get(settings.phone_identity)
    if raw is None:
        return None
    e164 = to_e164(raw, _phone_region(fields, settings))
    if e164 is None:
        out.warn(INVALID_PHONE, detail=f"identity {settings.phone_identity!r} is not a phone number")
    return e164


def _external_id(batch: UserBatch, settings: MappingSettings) -> str | None:
    """The configured identity (or the MPID) as Klaviyo's ``external_id``: the user id peers map."""
    identity = settings.external_id_identity
    if identity is None:
        return None
    value = batch.mpid if identity == "mpid" else batch.identities.get(identity)
    value = value.strip() if value else None
    return value or None


def _shadow_external_id_attribute(
    batch: UserBatch, settings: MappingSettings, fields: dict[str, Any], external_id: str, out: MappedBatch
) -> None:
    """The configured identity wins over a ``$external_id`` attribute: it is the setting that says so."""
    value = fields.pop("external_id", None)
    if value is None or str(value) == external_id:
        return
    path: FieldPath = ("external_id",)
    sources = [
        name
        for name, raw in batch.user_attributes.items()
        if _attribute_field(name, settings) == path and _field_value(path, raw) is not None
    ]
    name = min(sources, key=lambda source: _rank(source, settings))  # the one that won the field
    detail = f"user attribute {name!r} is shadowed by identity {settings.external_id_identity!r} for external_id"
    out.warn(ATTRIBUTE_SHADOWED, detail=detail)


def _attribute_field(name: str, settings: MappingSettings) -> FieldPath | None:
    key = name.lower()
    return settings.property_mapping.get(key) or DEFAULT_ATTRIBUTE_FIELDS.get(key)


def _phone_region(fields: dict[str, Any], settings: MappingSettings) -> str | None:
    """Region for national numbers: the profile's country (whichever attribute won it), else the default."""
    location = fields.get("location")
    country = location.get("country") if location else None
    region = region_for_country(country) if isinstance(country, str) else None
    return region or settings.default_phone_region


def _place_attributes(
    attributes: dict[str, Any], settings: MappingSettings, out: MappedBatch
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reserved profile fields and custom properties, the same whatever the order of the attributes."""
    fields: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    contested: list[FieldPath] = []
    mapping = settings.property_mapping
    for name, value in attributes.items():
        key = name.lower()
        path = mapping.get(key) or DEFAULT_ATTRIBUTE_FIELDS.get(key)
        if path is None:
            custom_key = name[1:] if name[:1] == "$" else name
            if custom_key in custom:
                _custom_clash(name, custom_key, value, custom, out)
            else:
                custom[custom_key] = value
            continue
        field_value = _field_value(path, value)
        if field_value is None:
            out.warn(INVALID_ATTRIBUTE, detail=f"user attribute {name!r} is not a text value for {'.'.join(path)}")
            continue
        if contested and path in contested:
            continue  # already settled from all the attributes
        target = fields if len(path) == 1 else fields.setdefault(path[0], {})  # paths have 1 or 2 parts
        if path[-1] in target:
            # Rare: a second source of one field. Settle it from all of them, whatever their order.
            contested.append(path)
            target[path[-1]] = _settle(path, attributes, settings, out)
        else:
            target[path[-1]] = field_value
    return fields, custom


def _settle(path: FieldPath, attributes: dict[str, Any], settings: MappingSettings, out: MappedBatch) -> str | float:
    """The value of the best valid source of ``path``; every other valid source is reported."""
    sources: list[tuple[tuple[int, str], str | float]] = []
    for name, value in attributes.items():
        if _attribute_field(name, settings) == path:
            field_value = _field_value(path, value)
            if field_value is not None:  # invalid values are reported where they are met
                sources.append((_rank(name, settings), field_value))
    sources.sort(key=lambda source: source[0])
    (_, winner), best = sources[0]
    for (_, name), _ in sources[1:]:
        detail = f"user attribute {name!r} is shadowed by {winner!r} for {'.'.join(path)}"
        out.warn(ATTRIBUTE_SHADOWED, detail=detail)
    return best


def _rank(name: str, settings: MappingSettings) -> tuple[int, str]:
    """Precedence of a field's source, lowest first: mapped, Klaviyo's spelling, its other cases, mParticle's.

    The name breaks ties (code-point order), so the result never depends on the order of keys.
    """
    key = name.lower()
    if key in settings.property_mapping:
        return (0, name)
    if name in KLAVIYO_RESERVED:
        return (1, name)
    return (2 if key in KLAVIYO_RESERVED else 3, name)


def _custom_clash(name: str, key: str, value: Any, custom: dict[str, Any], out: MappedBatch) -> None:
    """Two names give one custom key only as ``plan`` and ``$plan``: the one without ``$`` wins."""
    if key == name:
        custom[key] = value
        winner, loser = name, "$" + name
    else:
        winner, loser = key, name
    out.warn(ATTRIBUTE_SHADOWED, detail=f"user attribute {loser!r} is shadowed by {winner!r}")


def _field_value(path: FieldPath, value: Any) -> str | float | None:
    """Reserved fields take strings (latitude and longitude also numbers)."""
    if isinstance(value, bool) or value is None or isinstance(value, list | dict):
        return None
    if isinstance(value, int | float):
        return value if path in NUMERIC_FIELDS else str(value)
    text = str(value)
    return text or None
