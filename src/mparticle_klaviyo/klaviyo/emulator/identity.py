"""Who a profile in a request is: its identifiers, checked as Klaviyo checks them.

Rules: an email must look like an address (else 400); a phone number must be E.164 and a
number that can exist (``+10000000000`` cannot). An invalid phone next to another usable
identifier is ignored and reported through the ``X-Klaviyo-Partial-Failure: phone_number``
header; an invalid phone on its own is a 400.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, invalid
from .rules import is_email, is_phone_number

IDENTIFIERS: tuple[str, ...] = ("id", "email", "phone_number", "external_id", "anonymous_id", "_kx")
"""Every profile identifier, in the order used to match an existing profile."""

SUBSCRIBER_IDENTIFIERS: tuple[str, ...] = ("email", "phone_number")
"""The identifiers a subscription needs one of."""

_NOT_PROFILE_ATTRIBUTES = frozenset({*IDENTIFIERS, "properties", "meta", "subscriptions"})


@dataclass(slots=True)
class Identity:
    """The usable identifiers of one profile, and whether an invalid phone was dropped."""

    ids: dict[str, str] = field(default_factory=dict)
    phone_ignored: bool = False

    def key(self) -> str:
        """A stable key naming the profile within one request (its first identifier)."""
        for kind in IDENTIFIERS:
            value = self.ids.get(kind)
            if value is not None:
                return f"{kind}:{value}"
        return ""


def read_identity(resource: dict[str, Any], ptr: str, accepted: tuple[str, ...] = IDENTIFIERS) -> Identity:
    """Check the identifiers of a profile resource object found at ``ptr``.

    ``accepted`` are the identifiers that make the profile addressable; at least one of them
    must be usable or the request fails.
    """
    attrs: dict[str, Any] = resource.get("attributes") or {}
    identity = Identity()
    if resource.get("id"):
        identity.ids["id"] = resource["id"]
    for kind in IDENTIFIERS[1:]:
        value = attrs.get(kind)
        if value:
            identity.ids[kind] = value
    email = attrs.get("email")
    if email is not None and not is_email(email):
        raise invalid(f"Invalid email address '{email}'.", f"{ptr}/attributes/email")
    phone = attrs.get("phone_number")
    if phone is not None and not is_phone_number(phone):
        identity.ids.pop("phone_number", None)
        if not any(kind in identity.ids for kind in accepted):
            raise invalid_phone(phone, f"{ptr}/attributes/phone_number")
        identity.phone_ignored = True
    if not any(kind in identity.ids for kind in accepted):
        names = ", ".join(f"'{kind}'" for kind in accepted)
        raise invalid(f"The profile must have at least one identifier: one of {names}.", ptr)
    return identity


def invalid_phone(phone: str, ptr: str) -> ApiError:
    """The 400 for a phone number that is not a real number in E.164 form."""
    return invalid(
        f"Invalid phone number '{phone}': 'phone_number' must be a valid phone number in E.164 format, "
        "e.g. +15005550006.",
        ptr,
    )


def profile_attributes(resource: dict[str, Any]) -> dict[str, Any]:
    """The non-identifier attributes of a profile resource (names, location ...)."""
    attrs: dict[str, Any] = resource.get("attributes") or {}
    return {k: v for k, v in attrs.items() if k not in _NOT_PROFILE_ATTRIBUTES}


def profile_properties(resource: dict[str, Any]) -> dict[str, Any]:
    """The custom properties of a profile resource (empty when absent or null)."""
    attrs: dict[str, Any] = resource.get("attributes") or {}
    props: dict[str, Any] = attrs.get("properties") or {}
    return props
