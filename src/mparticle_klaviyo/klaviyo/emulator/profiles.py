"""Profile operations: /client/profiles (202, identifiers never changed) and /api/profile-import.

``/api/profile-import`` answers 201 when it creates a profile and 200 when it updates one,
with a ``PostProfileResponse``-shaped body; it answers 409 ``duplicate_profile`` when the
identifiers sent belong to two different stored profiles, and 404 for an unknown ``id``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .context import Ctx, Reply
from .errors import ApiError, not_found
from .identity import profile_attributes, profile_properties, read_identity
from .profile_store import Profile
from .state import iso

_IMPORT_IDENTIFIERS = ("id", "email", "phone_number", "external_id", "_kx")
_encoder = msgspec.json.Encoder()


def create_client_profile(ctx: Ctx, body: dict[str, Any]) -> Reply:
    """POST /client/profiles: create or update one profile's attributes."""
    resource = body["data"]
    identity = read_identity(resource, "/data")
    ctx.note(identity)
    if ctx.record:
        ctx.upsert(identity, resource)
    return Reply()


def import_profile(ctx: Ctx, body: dict[str, Any]) -> Reply:
    """POST /api/profile-import: upsert one profile, identifiers included."""
    resource = body["data"]
    identity = read_identity(resource, "/data", _IMPORT_IDENTIFIERS)
    ctx.note(identity)
    store = ctx.state.profiles
    wanted = identity.ids.get("id")
    if wanted is not None and wanted not in store.profiles:
        raise not_found(f"A profile with id '{wanted}' does not exist.")
    found = store.matches(ctx.account, identity)
    if len(found) > 1:
        raise _duplicate(found[1])
    profile, created = store.upsert(
        ctx.account,
        identity,
        profile_attributes(resource),
        profile_properties(resource),
        now=ctx.now,
        may_change_ids=True,
        clear_nulls=True,
    )
    return Reply(201 if created else 200, _encoder.encode(_response(profile)))


def _duplicate(other: str) -> ApiError:
    return ApiError(
        409,
        "duplicate_profile",
        "Conflict.",
        "A profile already exists with one of these identifiers.",
        pointer="/data/attributes",
        meta={"duplicate_profile_id": other},
    )


def _response(profile: Profile) -> dict[str, Any]:
    attributes = {
        "email": profile.ids.get("email"),
        "phone_number": profile.ids.get("phone_number"),
        "external_id": profile.ids.get("external_id"),
        **profile.attributes,
        "properties": profile.properties,
        "created": iso(profile.created),
        "updated": iso(profile.updated),
    }
    return {
        "data": {
            "type": "profile",
            "id": profile.id,
            "attributes": attributes,
            "links": {"self": f"https://a.klaviyo.com/api/profiles/{profile.id}/"},
        }
    }
