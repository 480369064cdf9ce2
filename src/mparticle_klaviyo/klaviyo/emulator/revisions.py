"""Klaviyo's API revisions as data: which exist, and what each changed in the bodies we serve.

One row per GA revision the emulator knows, oldest first. A row names the body *features* it
adds or drops (the schemas in :mod:`.schemas` switch on them) and the event limits it changes.
Rows 2025-01-15 to 2026-07-15 were read from the request schemas of Klaviyo's OpenAPI
branches of those names (``klaviyo/openapi``); 2026-10-15, which has no branch in that
snapshot, from the models of ``klaviyo-api`` 25.0.0, the SDK of that revision.

Klaviyo retires a revision two years after its release, so 2025-01-15 is the oldest still
served next to 2026-10-15. An older revision may still be configured: it is judged by the
oldest row's bodies and limits, and by ``FIRST_SERVED`` for whether its endpoint existed
(404 "No valid revisions found for method" when not).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

# Body features, named by where they sit. Each is switched on by the row that adds it.
WHATSAPP = "subscriptions.whatsapp"
"""The ``whatsapp`` channel of a subscription (marketing, transactional; unsubscribe adds conversational)."""
PUSH = "subscriptions.push"
"""The ``push`` channel of a subscription (marketing, tokens, anonymous_id; unsubscribe: marketing, tokens)."""
OPEN_TRACKING = "subscriptions.email.open_tracking"
"""``email.open_tracking`` consent (and its revocation); from then on ``email.marketing`` is optional."""
CLICK_TRACKING = "subscriptions.email.click_tracking"
"""``email.click_tracking`` consent (and its revocation)."""
BACKFILL = "event.backfill"
"""``backfill`` on an event and on a bulk entry."""
PATCH_IDENTIFIERS = "profile.meta.patch_identifiers"
"""``meta.patch_identifiers`` beside ``meta.patch_properties`` on a profile."""
SUBSCRIPTION_ANONYMOUS_ID = "subscription.profile.anonymous_id"
"""``anonymous_id`` among the attributes of a /client/subscriptions profile."""
IMPORT_ANONYMOUS_ID = "profile-import.anonymous_id"
"""``anonymous_id`` among the attributes of a /api/profile-import profile."""
EVENT_META_BESIDE = "event.profile.meta_beside_attributes"
"""An event's profile carries ``meta`` beside its ``attributes`` instead of inside them."""


@dataclass(frozen=True, slots=True)
class Revision:
    """One row: a revision date, the features it adds and drops, the event limits it sets."""

    date: str
    adds: tuple[str, ...] = ()
    drops: tuple[str, ...] = ()
    max_event_properties: int | None = None
    earliest_event_year: int | None = None


REVISIONS: tuple[Revision, ...] = (
    Revision(
        "2025-01-15",
        adds=(SUBSCRIPTION_ANONYMOUS_ID, IMPORT_ANONYMOUS_ID),
        max_event_properties=300,
        earliest_event_year=2000,
    ),
    Revision("2025-04-15", max_event_properties=400),
    Revision("2025-07-15", adds=(WHATSAPP,)),
    Revision("2025-10-15", drops=(SUBSCRIPTION_ANONYMOUS_ID, IMPORT_ANONYMOUS_ID)),
    Revision("2026-01-15", adds=(PUSH,)),
    Revision("2026-04-15", adds=(BACKFILL, PATCH_IDENTIFIERS, OPEN_TRACKING)),
    Revision("2026-07-15", earliest_event_year=1990),
    Revision("2026-10-15", adds=(CLICK_TRACKING, EVENT_META_BESIDE)),
)

KNOWN_REVISIONS: frozenset[str] = frozenset(row.date for row in REVISIONS)
"""Every revision of the table: the ones the emulator accepts unless configured otherwise."""

FIRST_SERVED: dict[str, str] = {
    "/client/events": "2022-10-17",
    "/client/profiles": "2022-10-17",
    "/client/subscriptions": "2022-10-17",
    "/api/events": "2022-10-17",
    "/api/profile-subscription-bulk-create-jobs": "2022-10-17",
    "/api/data-privacy-deletion-jobs": "2023-01-24",
    "/api/profile-subscription-bulk-delete-jobs": "2023-07-15",
    "/client/event-bulk-create": "2023-07-15",
    "/api/profile-import": "2024-02-15",
    "/api/event-bulk-create-jobs": "2024-05-15",
}
"""The first revision whose spec has each emulated endpoint (``klaviyo/openapi`` branches).

Until 2024-10-15 the spec spelled paths with a trailing slash; the emulator accepts both.
"""


@dataclass(frozen=True, slots=True)
class RevisionRules:
    """The table resolved at one revision: its body features and event limits."""

    features: frozenset[str]
    max_event_properties: int
    earliest_event_year: int


@functools.cache
def rules_at(date: str) -> RevisionRules:
    """The rules in force at revision date ``date`` (``YYYY-MM-DD``); before the table, its first row."""
    features: set[str] = set()
    properties = year = 0
    for row in (REVISIONS[0], *(row for row in REVISIONS[1:] if row.date <= date)):
        features.update(row.adds)
        features.difference_update(row.drops)
        properties = row.max_event_properties or properties
        year = row.earliest_event_year or year
    return RevisionRules(frozenset(features), properties, year)
