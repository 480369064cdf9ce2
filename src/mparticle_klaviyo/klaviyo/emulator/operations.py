"""The emulated endpoints: path, auth side, scope, body limit, schema and handler of each.

Also the retired v1/v2 paths (``/api/track``, ``/api/identify``, ``/api/track-once``,
``/api/v1/*``, ``/api/v2/*``), which answer 410 Gone naming their replacements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import events, privacy, profiles, subscriptions
from .context import Ctx, Reply
from .revisions import FIRST_SERVED, rules_at
from .schema import Obj
from .schemas import bodies

EVENT_BODY_LIMIT = 5 * 1024 * 1024
PROFILE_IMPORT_BODY_LIMIT = 100 * 1024

Handler = Callable[[Ctx, dict[str, Any]], Reply]


@dataclass(frozen=True, slots=True)
class Operation:
    """One emulated POST endpoint; its body schema and first revision come from the revision table."""

    path: str
    client: bool
    scopes: frozenset[str]
    max_body: int
    handler: Handler

    @property
    def since(self) -> str:
        """The first revision serving the endpoint: older ones get 404 "No valid revisions found"."""
        return FIRST_SERVED[self.path]

    def schema_at(self, revision_date: str) -> Obj:
        """The body schema in force at ``revision_date`` (``YYYY-MM-DD``)."""
        return bodies(rules_at(revision_date).features)[self.path]

    @property
    def endpoint(self) -> str:
        """The rate-limit bucket name, e.g. ``POST /client/events``."""
        return f"POST {self.path}"


def _op(path: str, scopes: str, handler: Handler, max_body: int = EVENT_BODY_LIMIT) -> Operation:
    return Operation(path, path.startswith("/client/"), frozenset(scopes.split()), max_body, handler)


OPERATIONS: dict[str, Operation] = {
    op.path: op
    for op in (
        _op("/client/events", "events:write", events.create_event),
        _op("/client/profiles", "profiles:write", profiles.create_client_profile),
        _op("/client/subscriptions", "subscriptions:write", subscriptions.create_client_subscription),
        _op("/client/event-bulk-create", "events:write", events.create_client_bulk),
        _op("/api/events", "events:write", events.create_event),
        _op("/api/event-bulk-create-jobs", "events:write", events.create_server_bulk),
        _op(
            "/api/profile-subscription-bulk-create-jobs",
            "lists:write profiles:write subscriptions:write",
            subscriptions.create_server_subscription_bulk,
        ),
        _op(
            "/api/profile-subscription-bulk-delete-jobs",
            "lists:write profiles:write subscriptions:write",
            subscriptions.delete_server_subscription_bulk,
        ),
        _op("/api/profile-import", "profiles:write", profiles.import_profile, PROFILE_IMPORT_BODY_LIMIT),
        _op("/api/data-privacy-deletion-jobs", "data-privacy:write", privacy.request_profile_deletion),
    )
}

_EVENTS = ("POST /client/events", "POST /api/events")
_PROFILES = ("POST /client/profiles", "POST /api/profile-import")
_SUBSCRIBE = ("POST /client/subscriptions", "POST /api/profile-subscription-bulk-create-jobs")
_UNSUBSCRIBE = ("POST /api/profile-subscription-bulk-delete-jobs",)
_DELETE = ("POST /api/data-privacy-deletion-jobs",)
_LEGACY_EXACT = {"/api/track": _EVENTS, "/api/track-once": _EVENTS, "/api/identify": _PROFILES}


def legacy_replacements(path: str) -> tuple[str, ...] | None:
    """The replacement endpoints of a retired v1/v2 path, or None if ``path`` is not one."""
    exact = _LEGACY_EXACT.get(path)
    if exact is not None:
        return exact
    if path in ("/api/v1", "/api/v2") or path.startswith(("/api/v1/", "/api/v2/")):
        return _v1_v2_replacements(path)
    return None


def _v1_v2_replacements(path: str) -> tuple[str, ...]:
    # v2 deleted profiles under /data-privacy/; v1 unsubscribed through /people/exclusions, and
    # v2's list subscribe path unsubscribed when called with DELETE.
    if "data-privacy" in path:
        return _DELETE
    if "exclusions" in path or "unsubscribe" in path:
        return _UNSUBSCRIBE
    if "subscribe" in path or "/list" in path:
        return _SUBSCRIBE + _UNSUBSCRIBE
    return _EVENTS + _PROFILES + _SUBSCRIBE + _UNSUBSCRIBE + _DELETE
