"""Map one user batch: platform gate, profile, consent, then each event."""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from mparticle_klaviyo.mapping.consent import apply_ccpa, apply_consent, apply_revocations, consent_changes
from mparticle_klaviyo.mapping.events import EventContext, map_event, plan_event
from mparticle_klaviyo.mapping.limits import profile_limit_problem
from mparticle_klaviyo.mapping.profile import build_profile
from mparticle_klaviyo.mapping.result import (
    LIMIT_EXCEEDED,
    NO_EMAIL_OR_PHONE,
    UNSUPPORTED_PLATFORM,
    MappedBatch,
)
from mparticle_klaviyo.mapping.settings import MappingSettings
from mparticle_klaviyo.mparticle.model import UserBatch

_encoder = msgspec.json.Encoder()


def map_batch(batch: UserBatch, settings: MappingSettings, now_ms: float) -> MappedBatch:
    """Klaviyo events and subscriptions for one batch, with a notice for everything not sent.

    Pure: the result depends only on the arguments (``now_ms`` bounds event times).
    """
    out = MappedBatch()
    profile = _profile(batch, settings, out)
    if profile is None:
        return out
    problem, profile_bytes = profile_limit_problem(profile.get("properties") or {})
    if problem:
        # Every request would carry this profile, so every event would be rejected.
        for event in batch.events:
            out.drop(LIMIT_EXCEEDED, event.index, detail=problem)
        return out
    ctx = EventContext(settings, profile, profile_bytes, now_ms, _batch_key(batch), out)
    for event in batch.events:
        map_event(event, ctx)
    return out


def plan_batch(batch: UserBatch, settings: MappingSettings, now_ms: float) -> MappedBatch:
    """What ingest must know of a batch: the events to send (``planned``), subscriptions, notices.

    ``map_batch`` without building the events: it decides every drop as ``map_batch`` does
    except Klaviyo's size limits (``limit_exceeded``), which the full mapping at send time checks.
    """
    out = MappedBatch()
    profile = _profile(batch, settings, out)
    if profile is None:
        return out
    out.profile = profile
    ctx = EventContext(settings, profile, 0, now_ms, _batch_key(batch), out)
    for event in batch.events:
        planned = plan_event(event, ctx)
        if planned is not None:
            out.planned.append(planned)
    return out


def _profile(batch: UserBatch, settings: MappingSettings, out: MappedBatch) -> dict[str, Any] | None:
    """The batch's profile with its consents applied; None (every event dropped) without one."""
    if batch.platform not in settings.supported_platforms:
        for event in batch.events:
            out.drop(UNSUPPORTED_PLATFORM, event.index, detail=batch.platform)
        return None
    profile = build_profile(batch, settings, out)
    if "email" not in profile and "phone_number" not in profile:
        for event in batch.events:
            out.drop(NO_EMAIL_OR_PHONE, event.index)
        return None
    apply_ccpa(batch.consents, profile, out)
    changes = consent_changes(batch.consents, settings, out)
    apply_consent(changes.granted, profile, settings, out, changes.granted_ms)
    apply_revocations(changes.revoked, profile, out, changes.revoked_ms)
    return profile


def _batch_key(batch: UserBatch) -> str:
    """What identifies the batch in fallback unique ids: its request id, else its content."""
    if batch.batch_key:
        return batch.batch_key
    try:
        content = _encoder.encode(batch)
    except UnicodeEncodeError:  # lone surrogates, in batches built by code rather than decoded
        content = repr(batch).encode("utf-8", "surrogatepass")
    return hashlib.sha256(content).hexdigest()
