"""Klaviyo's documented per-account limits: request rates per endpoint and payload limits."""

from __future__ import annotations

import msgspec


class RateLimit(msgspec.Struct, frozen=True):
    """Klaviyo's two fixed windows for one endpoint: per second (burst) and per minute (steady)."""

    burst_per_second: int
    steady_per_minute: int


# Klaviyo XL tier as given per endpoint by the 2026-07-15 spec (x-klaviyo-ratelimit).
DEFAULT_RATE_LIMITS: dict[str, RateLimit] = {
    "POST /client/events": RateLimit(350, 3500),
    "POST /client/profiles": RateLimit(350, 3500),
    "POST /client/subscriptions": RateLimit(350, 750),
    "POST /client/event-bulk-create": RateLimit(10, 150),
    "POST /api/events": RateLimit(350, 3500),
    "POST /api/event-bulk-create-jobs": RateLimit(10, 150),
    "POST /api/profile-import": RateLimit(75, 750),
    "POST /api/profile-subscription-bulk-create-jobs": RateLimit(75, 750),
    "POST /api/profile-subscription-bulk-delete-jobs": RateLimit(75, 750),
    "POST /api/data-privacy-deletion-jobs": RateLimit(3, 60),
}

MAX_EVENT_PROPERTIES = 400
MAX_STRING_BYTES = 100 * 1024
MAX_ARRAY_ITEMS = 4000
MAX_NESTING = 10
MAX_METRIC_NAME_CHARS = 127
MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_BULK_EVENTS = 1000
MAX_BULK_PROFILES = 1000
# Bulk unsubscribe ("Maximum number of profiles per call: 100", the 2026-07-15 spec).
MAX_BULK_UNSUBSCRIBE_PROFILES = 100
EARLIEST_EVENT_YEAR = 1990
DEFAULT_REVISION = "2026-07-15"
