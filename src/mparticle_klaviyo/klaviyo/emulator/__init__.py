"""A strict Klaviyo API emulator: an independent judge of what our client sends.

It serves Klaviyo's write endpoints as strictly as the real API (and stricter where the real
rules are unpublished), records what it accepts, and can be told to throttle or fail:

* Client API (``?company_id=<public key>``): ``POST /client/events``, ``/client/profiles``,
  ``/client/subscriptions``, ``/client/event-bulk-create``.
* Server API (``Authorization: Klaviyo-API-Key pk_...``): ``POST /api/events``,
  ``/api/event-bulk-create-jobs``, ``/api/profile-subscription-bulk-create-jobs``,
  ``/api/profile-subscription-bulk-delete-jobs``, ``/api/profile-import``,
  ``/api/data-privacy-deletion-jobs``.
* Retired v1/v2 paths (``/api/track``, ``/api/identify``, ``/api/track-once``, ``/api/v1/*``,
  ``/api/v2/*``) answer 410 Gone naming their replacements.
* Revisions are data (:mod:`.revisions`): every revision Klaviyo still serves, 2025-01-15 to
  2026-10-15, is accepted, each judged by the body fields it had (e.g. ``click_tracking``
  from 2026-10-15); an endpoint older than the revision sent answers 404.

Inspection and control (not Klaviyo's; never counted, limited or faulted):

* ``GET /_emulator/state`` → ``{"events": [...], "events_recorded": n, "profiles": {...},
  "subscriptions": [...], "unsubscriptions": [...], "deletions": [...], "duplicates_dropped": n,
  "rejected": [...], "throttled": n, "requests": n, "violations": [...], "faults_injected": n,
  "partial_failures": n}``.
  An event is ``{account, company, endpoint, profile_id, profile: {identifiers}, metric,
  service, unique_id, time, value, value_currency, properties, backfill, received_at}``;
  profiles are keyed by their first identifier (email, phone, external id ...); a rejection
  is ``{status, method, path, code, detail, pointer | parameter}``; a subscription is
  ``{account, profile_id, list_id, channels: ["email.marketing", ...], email, phone_number, ...}``;
  a profile shows its ``consent`` (``{"email.marketing": "SUBSCRIBED" | "UNSUBSCRIBED"}``, the
  latest call wins) and ``lists``.
* ``GET /_emulator/unsubscriptions`` and ``GET /_emulator/deletions``: those two lists alone.
* ``POST /_emulator/reset`` clears recorded state and rate-limit counts (keeps config, faults).
* ``POST /_emulator/faults`` adds a rule, e.g. ``{"status": 503, "count": 5}``,
  ``{"reset": true, "probability": 0.1}``, ``{"delay_ms": 200, "count": 10}``, optionally
  with ``"path": "/client/events"``; ``GET`` lists rules; ``DELETE`` clears them.
* ``POST /_emulator/limits`` overrides rate limits: ``{"POST /client/events": [1, 5]}``.
* ``GET|POST /_emulator/keys``, ``DELETE /_emulator/keys/{key}``: list, add (or change the
  scopes of) and revoke private keys; a revoked key gets 401, a key missing a scope 403.

It never imports the mapping or payload builders: a judge that shares our code would agree
with our bugs.
"""

from __future__ import annotations

from .app import create_app
from .config import DEFAULT_RATE_LIMITS, EmulatorConfig
from .core import Emulator
from .server import RunningEmulator, serve_emulator, start_emulator

__all__ = [
    "DEFAULT_RATE_LIMITS",
    "Emulator",
    "EmulatorConfig",
    "RunningEmulator",
    "create_app",
    "serve_emulator",
    "start_emulator",
]
