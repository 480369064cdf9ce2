"""Attribute names: mParticle reserved names and Klaviyo reserved names -> Klaviyo profile fields.

A profile field is a path: ``("first_name",)`` or ``("location", "city")``.
"""

from __future__ import annotations

FieldPath = tuple[str, ...]

# Klaviyo's legacy Track/Identify vocabulary ($-names) -> current profile attributes.
KLAVIYO_RESERVED: dict[str, FieldPath] = {
    "$first_name": ("first_name",),
    "$last_name": ("last_name",),
    "$organization": ("organization",),
    "$title": ("title",),
    "$image": ("image",),
    "$external_id": ("external_id",),
    "$city": ("location", "city"),
    "$region": ("location", "region"),
    "$country": ("location", "country"),
    "$zip": ("location", "zip"),
    "$address1": ("location", "address1"),
    "$address2": ("location", "address2"),
    "$latitude": ("location", "latitude"),
    "$longitude": ("location", "longitude"),
    "$timezone": ("location", "timezone"),
    "$ip": ("location", "ip"),
}

# mParticle's reserved user attributes (SDK constants; batches may lower-case them).
MPARTICLE_RESERVED: dict[str, FieldPath] = {
    "$firstname": ("first_name",),
    "$lastname": ("last_name",),
    "$city": ("location", "city"),
    "$state": ("location", "region"),
    "$country": ("location", "country"),
    "$zip": ("location", "zip"),
    "$address": ("location", "address1"),
}

# Current spellings accepted as property_mapping targets, e.g. "location.city".
CURRENT_FIELDS: dict[str, FieldPath] = {".".join(path): path for path in KLAVIYO_RESERVED.values()}

# Fields whose values may be numbers (everything else is sent as a string).
NUMERIC_FIELDS = frozenset({("location", "latitude"), ("location", "longitude")})

# Default profile field for each attribute name, lower-cased, as the mapper looks it up.
DEFAULT_ATTRIBUTE_FIELDS: dict[str, FieldPath] = {**MPARTICLE_RESERVED, **KLAVIYO_RESERVED}


def profile_field(target: str) -> FieldPath | None:
    """A property_mapping target (``$first_name`` or ``location.city``) as a field path."""
    key = target.strip()
    return KLAVIYO_RESERVED.get(key.lower()) or CURRENT_FIELDS.get(key.lower())


def valid_targets() -> list[str]:
    """Every accepted property_mapping target, for error messages."""
    return sorted(KLAVIYO_RESERVED) + sorted(CURRENT_FIELDS)
