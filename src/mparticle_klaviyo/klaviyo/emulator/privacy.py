"""Data privacy: ``POST /api/data-privacy-deletion-jobs`` (Klaviyo's "Request Profile Deletion").

The profile is named by exactly one of ``email``, ``phone_number`` (attributes) or ``id``
(beside them); the spec says more than one is an error, and the emulator also refuses none.
The email and phone must be valid as everywhere else. Klaviyo runs the job asynchronously, so
an identifier that matches no profile is still 202; the emulator records every request in
``deletions`` and deletes the matched profile with its events, subscriptions and
unsubscriptions at once.
"""

from __future__ import annotations

from typing import Any

from .context import Ctx, Reply
from .errors import invalid
from .identity import read_identity
from .state import iso

_PTR = "/data/attributes/profile/data"
_KINDS = ("email", "phone_number", "id")


def request_profile_deletion(ctx: Ctx, body: dict[str, Any]) -> Reply:
    """POST /api/data-privacy-deletion-jobs: delete one profile and everything recorded for it."""
    resource = body["data"]["attributes"]["profile"]["data"]
    kind, value = _the_identifier(resource)
    identity = read_identity(resource, _PTR, (kind,))
    store = ctx.state.profiles
    found = [store.profiles[pid] for pid in store.matches(ctx.account, identity)]
    totals = {"events": 0, "subscriptions": 0, "unsubscriptions": 0}
    for profile in found:
        for name, count in ctx.state.delete_profile(profile).items():
            totals[name] += count
    ctx.state.record_deletion(
        {
            "account": ctx.account,
            "identifier": {kind: value},
            "profile_ids": [profile.id for profile in found],
            "events_deleted": totals["events"],
            "subscriptions_deleted": totals["subscriptions"],
            "unsubscriptions_deleted": totals["unsubscriptions"],
            "endpoint": ctx.endpoint,
            "time": iso(ctx.now),
        }
    )
    return Reply()


def _the_identifier(resource: dict[str, Any]) -> tuple[str, str]:
    """The one identifier sent, as (kind, value); a null member counts as not sent."""
    attrs: dict[str, Any] = resource["attributes"]
    sent: dict[str, str | None] = {
        "id": resource.get("id"),
        "email": attrs.get("email"),
        "phone_number": attrs.get("phone_number"),
    }
    given = [(kind, value) for kind in _KINDS if (value := sent[kind]) is not None]
    names = "'email', 'phone_number' or 'id'"
    if len(given) > 1:
        raise invalid(f"Only one of {names} may be given to identify the profile to delete.", _PTR)
    if not given:
        raise invalid(f"One of {names} is required to identify the profile to delete.", _PTR)
    kind, value = given[0]
    if not value.strip():
        where = f"{_PTR}/id" if kind == "id" else f"{_PTR}/attributes/{kind}"
        raise invalid(f"'{kind}' must not be empty.", where)
    return kind, value
