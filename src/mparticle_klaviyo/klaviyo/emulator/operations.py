"""The emulated endpoints: path, auth side, scope, body limit, schema and handler of each.

Also the retired v1/v2 paths (``/api/track``, ``/api/identify``, ``/api/track-once``,
``/api/v1/*``, ``/api/v2/*``), which answer 410 Gone naming their replacements.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import events, profiles, schemas, subscriptions
from .context import Ctx, Reply
from .schema import Obj

EVENT_BODY_LIMIT = 5 * 1024 * 1024
PROFILE_IMPORT_BODY_LIMIT = 100 * 1024

Handler = Callable[[Ctx, dict[str, Any]], Reply]


@dataclass(frozen=True, slots=True)
class Operation:
    """One emulated POST endpoint.

    ``since`` is the first revision date the endpoint exists at; an older revision gets 404
    "No valid revisions found for method", as Klaviyo answers. ``revised`` lists later body
    schemas as (first revision date, schema), oldest first.
    """

    path: str
    client: bool
    scopes: frozenset[str]
    max_body: int
    schema: Obj
    handler: Handler
    since: str = "2023-07-15"
    revised: tuple[tuple[str, Obj], ...] = ()

    def schema_at(self, revision_date: str) -> Obj:
        """The body schema in force at ``revision_date`` (``YYYY-MM-DD``)."""
        schema = self.schema
        for since, later in self.revised:
            if revision_date >= since:
                schema = later
        return schema

    @property
    def endpoint(self) -> str:
        """The rate-limit bucket name, e.g. ``POST /client/events``."""
        return f"POST {self.path}"


def _op(
    path: str,
    scopes: str,
    schema: Obj,
    handler: Handler,
    max_body: int = EVENT_BODY_LIMIT,
    since: str = "2023-07-15",
    revised: tuple[tuple[str, Obj], ...] = (),
) -> Operation:
    client = path.startswith("/client/")
    return Operation(path, client, frozenset(scopes.split()), max_body, schema, handler, since, revised)


_EVENT_REVISIONS = (("2026-10-15", schemas.EVENT_2026_10),)


# `since` for the bulk event endpoints is our assumption (they appeared around 2024-10-15).
OPERATIONS: dict[str, Operation] = {
    op.path: op
    for op in (
        _op("/client/events", "events:write", schemas.EVENT, events.create_event, revised=_EVENT_REVISIONS),
        _op("/client/profiles", "profiles:write", schemas.CLIENT_PROFILE, profiles.create_client_profile),
        _op(
            "/client/subscriptions",
            "subscriptions:write",
            schemas.CLIENT_SUBSCRIPTION,
            subscriptions.create_client_subscription,
        ),
        _op(
            "/client/event-bulk-create",
            "events:write",
            schemas.CLIENT_EVENT_BULK,
            events.create_client_bulk,
            since="2024-10-15",
        ),
        _op("/api/events", "events:write", schemas.EVENT, events.create_event, revised=_EVENT_REVISIONS),
        _op(
            "/api/event-bulk-create-jobs",
            "events:write",
            schemas.SERVER_EVENT_BULK,
            events.create_server_bulk,
            since="2024-10-15",
        ),
        _op(
            "/api/profile-subscription-bulk-create-jobs",
            "lists:write profiles:write subscriptions:write",
            schemas.SERVER_SUBSCRIPTION_BULK,
            subscriptions.create_server_subscription_bulk,
        ),
        _op(
            "/api/profile-import",
            "profiles:write",
            schemas.PROFILE_IMPORT,
            profiles.import_profile,
            max_body=PROFILE_IMPORT_BODY_LIMIT,
        ),
    )
}

_EVENTS = ("POST /client/events", "POST /api/events")
_PROFILES = ("POST /client/profiles", "POST /api/profile-import")
_SUBSCRIBE = ("POST /client/subscriptions", "POST /api/profile-subscription-bulk-create-jobs")
_LEGACY_EXACT = {"/api/track": _EVENTS, "/api/track-once": _EVENTS, "/api/identify": _PROFILES}


def legacy_replacements(path: str) -> tuple[str, ...] | None:
    """The replacement endpoints of a retired v1/v2 path, or None if ``path`` is not one."""
    exact = _LEGACY_EXACT.get(path)
    if exact is not None:
        return exact
    if path in ("/api/v1", "/api/v2") or path.startswith(("/api/v1/", "/api/v2/")):
        if "subscribe" in path or "/list" in path:
            return _SUBSCRIBE
        return _EVENTS + _PROFILES + _SUBSCRIBE
    return None
