"""Proving a key without sending data: an empty body to an endpoint, judged by Klaviyo's answer.

Klaviyo checks a request's credentials (the key, then the scopes the endpoint needs) before it
reads the body, so an empty JSON object answers 401 (key unknown or revoked) or 403 (a scope
missing) when the credentials are bad, and 400 (the body is invalid) when they are good. Nothing
is recorded either way. Every private endpoint needs a scope and no read endpoint is open to
every key, so this write-shaped probe is the cheapest proof there is.
"""

from __future__ import annotations

import msgspec

from mparticle_klaviyo.klaviyo.classify import Delivered, Outcome, Permanent, Throttled
from mparticle_klaviyo.klaviyo.request import AuthKind, KlaviyoRequest, RequestKind

# 401: the key is unknown, revoked or malformed; 403: the key lacks a scope the endpoint needs.
REFUSAL_STATUSES = frozenset({401, 403})

# The scopes a private key needs per endpoint (the spec's ``x-klaviyo-scopes``).
SCOPES: dict[str, tuple[str, ...]] = {
    "POST /api/events": ("events:write",),
    "POST /api/event-bulk-create-jobs": ("events:write",),
    "POST /api/profile-import": ("profiles:write",),
    "POST /api/profile-subscription-bulk-create-jobs": ("lists:write", "profiles:write", "subscriptions:write"),
    "POST /api/profile-subscription-bulk-delete-jobs": ("lists:write", "profiles:write", "subscriptions:write"),
    "POST /api/data-privacy-deletion-jobs": ("data-privacy:write",),
}

_KINDS: dict[str, RequestKind] = {
    "POST /api/event-bulk-create-jobs": "event_bulk",
    "POST /api/profile-subscription-bulk-create-jobs": "subscription_bulk",
    "POST /api/profile-subscription-bulk-delete-jobs": "unsubscription_bulk",
    "POST /api/data-privacy-deletion-jobs": "deletion",
    "POST /client/subscriptions": "subscription",
}


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """Klaviyo refused the credentials (401/403) on ``endpoint``, with its error code and detail."""

    endpoint: str
    status: int
    code: str
    detail: str = ""

    def describe(self) -> str:
        """``403 permission_denied on POST /api/...``: what Klaviyo said, never a key."""
        return f"{self.status} {self.code} on {self.endpoint}"


class Accepted(msgspec.Struct, frozen=True, kw_only=True):
    """Klaviyo got past the credentials: ``status`` is its answer (400 to an empty probe)."""

    status: int


class Inconclusive(msgspec.Struct, frozen=True, kw_only=True):
    """No word on the credentials: Klaviyo unreachable, failing (5xx) or throttling (429)."""

    reason: str
    detail: str = ""


Verdict = Accepted | Refusal | Inconclusive


def refusal_of(endpoint: str, outcome: Outcome) -> Refusal | None:
    """The refusal ``outcome`` is, when it is a 401 or 403 from Klaviyo."""
    if isinstance(outcome, Permanent) and outcome.status in REFUSAL_STATUSES:
        return Refusal(endpoint=endpoint, status=outcome.status, code=outcome.reason, detail=outcome.detail)
    return None


def probe_request(endpoint: str) -> KlaviyoRequest:
    """An empty body to ``endpoint`` (``POST /path``): refused by its credentials check, else a 400."""
    _, _, path = endpoint.partition(" ")
    auth: AuthKind = "private" if path.startswith("/api/") else "public"
    return KlaviyoRequest(path=path, auth=auth, kind=_KINDS.get(endpoint, "event"), body={})


def judge(endpoint: str, outcome: Outcome) -> Verdict:
    """What a probe's answer says about the credentials it was sent with."""
    refusal = refusal_of(endpoint, outcome)
    if refusal is not None:
        return refusal
    if isinstance(outcome, Delivered):
        return Accepted(status=outcome.status)
    if isinstance(outcome, Permanent) and outcome.status:
        # Any other 4xx was decided after the credentials passed (an empty body is 400).
        return Accepted(status=outcome.status)
    if isinstance(outcome, Throttled):
        return Inconclusive(reason="throttled", detail=outcome.detail)
    # A transient failure, or status 0: an error of ours before anything reached Klaviyo.
    return Inconclusive(reason=outcome.reason, detail=outcome.detail)
