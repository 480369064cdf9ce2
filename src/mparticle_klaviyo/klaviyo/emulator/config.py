"""Emulator settings: known accounts, keys, lists, revisions, rate limits and policy choices."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .revisions import KNOWN_REVISIONS

ALL_WRITE_SCOPES: frozenset[str] = frozenset(
    {"events:write", "profiles:write", "subscriptions:write", "lists:write", "data-privacy:write"}
)
"""Every scope an operation of the emulator can require."""

DEMO_COMPANY_ID = "DEMO01"
"""The public key (company id / site id) the default configuration accepts."""

DEMO_PRIVATE_KEY = "pk_demo_private_key"
"""The private key the default configuration accepts, with every write scope."""

DEMO_LIST_ID = "LIST01"
"""The list id the default configuration knows."""

# Klaviyo's XL tier per endpoint (spec `x-klaviyo-ratelimit`): (per second, per minute).
# Kept here rather than imported so the emulator judges the client by its own reading.
DEFAULT_RATE_LIMITS: dict[str, tuple[int, int]] = {
    "POST /client/events": (350, 3500),
    "POST /client/profiles": (350, 3500),
    "POST /client/subscriptions": (350, 750),
    "POST /client/event-bulk-create": (10, 150),
    "POST /api/events": (350, 3500),
    "POST /api/event-bulk-create-jobs": (10, 150),
    "POST /api/profile-import": (75, 750),
    "POST /api/profile-subscription-bulk-create-jobs": (75, 750),
    "POST /api/profile-subscription-bulk-delete-jobs": (75, 750),  # 700/m before revision 2026-01-15
    "POST /api/data-privacy-deletion-jobs": (3, 60),
}

DEFAULT_REVISIONS: frozenset[str] = KNOWN_REVISIONS
"""Revisions accepted unless configured otherwise: every row of the revision table."""


def _default_keys() -> dict[str, frozenset[str]]:
    return {DEMO_PRIVATE_KEY: ALL_WRITE_SCOPES}


def _default_key_accounts() -> dict[str, str]:
    return {DEMO_PRIVATE_KEY: DEMO_COMPANY_ID}


@dataclass
class EmulatorConfig:
    """Everything the emulator is told about the accounts it serves and how strict to be.

    ``company_ids`` empty means: accept any 6-character alphanumeric company id.
    ``key_accounts`` maps a private key to its account (company id); a key not listed is its
    own account. Events sent with the public key and with the private key of one account
    share dedup and profiles, as at Klaviyo.
    ``unknown_company_status`` may be a 2xx status, in which case the request is answered
    with it but nothing is recorded (Klaviyo's real behaviour here is unverified).
    ``max_rejected_kept`` and ``max_events_kept`` (None: all) bound the memory of long runs;
    only the newest entries are shown, counters stay exact.
    """

    company_ids: frozenset[str] = frozenset({DEMO_COMPANY_ID})
    private_keys: dict[str, frozenset[str]] = field(default_factory=_default_keys)
    key_accounts: dict[str, str] = field(default_factory=_default_key_accounts)
    lists: frozenset[str] = frozenset({DEMO_LIST_ID})
    revisions: frozenset[str] = DEFAULT_REVISIONS
    rate_limits: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))
    unknown_company_status: int = 400
    auth_failure_status: int = 401
    clock: Callable[[], float] = time.time
    fault_seed: int | None = None
    max_rejected_kept: int = 10_000
    max_events_kept: int | None = None

    def account_of_key(self, key: str) -> str:
        """The account a private key belongs to (the key itself when not mapped)."""
        return self.key_accounts.get(key, key)

    def limits_for(self, endpoint: str) -> tuple[int, int]:
        """The (per second, per minute) limits of ``endpoint``, Klaviyo's default if unset."""
        return self.rate_limits.get(endpoint) or DEFAULT_RATE_LIMITS[endpoint]
