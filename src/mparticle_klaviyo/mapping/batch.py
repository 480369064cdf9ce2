"""Map one user batch: platform gate, profile, consent, then each event."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
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
    Notice,
    Subscription,
    Unsubscription,
)
from mparticle_klaviyo.mapping.settings import MappingSettings
from mparticle_klaviyo.mparticle.model import Event, UserBatch

_encoder = msgspec.json.Encoder()
Drop = tuple[str, str | None]


class PreparedUser(msgspec.Struct, frozen=True, kw_only=True):
    """What a batch's user part maps to, whatever its events: the profile or why every event drops.

    ``prepare_user`` computes it once; ``map_events`` maps any events of that user with it, so a
    user's events mapped one job at a time need the profile built only once. Treat as read-only.
    """

    settings: MappingSettings
    notices: tuple[Notice, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()
    unsubscriptions: tuple[Unsubscription, ...] = ()
    profile: dict[str, Any] | None = None
    profile_bytes: int = 0
    batch_key: str = ""
    drop: Drop | None = None  # why every event drops: (reason, detail)


def map_batch(batch: UserBatch, settings: MappingSettings, now_ms: float) -> MappedBatch:
    """Klaviyo events and subscriptions for one batch, with a notice for everything not sent.

    Pure: the result depends only on the arguments (``now_ms`` bounds event times).
    """
    return map_events(prepare_user(batch, settings), batch.events, now_ms)


def prepare_user(batch: UserBatch, settings: MappingSettings) -> PreparedUser:
    """The part of ``map_batch`` that depends on the user, not on the events (see ``PreparedUser``)."""
    out = MappedBatch()
    profile, drop = _profile(batch, settings, out)
    profile_bytes = 0
    if profile is not None:
        problem, profile_bytes = profile_limit_problem(profile.get("properties") or {})
        if problem:
            # Every request would carry this profile, so every event would be rejected.
            drop = (LIMIT_EXCEEDED, problem)
    return PreparedUser(
        settings=settings,
        notices=tuple(out.notices),
        subscriptions=tuple(out.subscriptions),
        unsubscriptions=tuple(out.unsubscriptions),
        profile=profile if drop is None else None,
        profile_bytes=profile_bytes,
        batch_key=_batch_key(batch) if drop is None else "",
        drop=drop,
    )


def map_events(user: PreparedUser, events: Iterable[Event], now_ms: float) -> MappedBatch:
    """The mapping of ``events`` of a prepared user: what ``map_batch`` gives for that batch."""
    out = MappedBatch(
        notices=list(user.notices),
        subscriptions=list(user.subscriptions),
        unsubscriptions=list(user.unsubscriptions),
    )
    if user.drop is not None or user.profile is None:
        _drop_all(out, events, user.drop)
        return out
    ctx = EventContext(user.settings, user.profile, user.profile_bytes, now_ms, user.batch_key, out)
    for event in events:
        map_event(event, ctx)
    return out


def plan_batch(batch: UserBatch, settings: MappingSettings, now_ms: float) -> MappedBatch:
    """What ingest must know of a batch: the events to send (``planned``), subscriptions, notices.

    ``map_batch`` without building the events: it decides every drop as ``map_batch`` does
    except Klaviyo's size limits (``limit_exceeded``), which the full mapping at send time checks.
    """
    out = MappedBatch()
    profile, drop = _profile(batch, settings, out)
    if profile is None:
        _drop_all(out, batch.events, drop)
        return out
    out.profile = profile
    ctx = EventContext(settings, profile, 0, now_ms, _batch_key(batch), out)
    for event in batch.events:
        planned = plan_event(event, ctx)
        if planned is not None:
            out.planned.append(planned)
    return out


def _profile(
    batch: UserBatch, settings: MappingSettings, out: MappedBatch
) -> tuple[dict[str, Any] | None, Drop | None]:
    """The batch's profile with its consents applied, or why every event of the batch drops."""
    if batch.platform not in settings.supported_platforms:
        return None, (UNSUPPORTED_PLATFORM, batch.platform)
    profile = build_profile(batch, settings, out)
    if "email" not in profile and "phone_number" not in profile:
        return None, (NO_EMAIL_OR_PHONE, None)
    apply_ccpa(batch.consents, profile, out)
    changes = consent_changes(batch.consents, settings, out)
    apply_consent(changes.granted, profile, settings, out, changes.granted_ms)
    apply_revocations(changes.revoked, profile, out, changes.revoked_ms)
    return profile, None


def _drop_all(out: MappedBatch, events: Iterable[Event], drop: Drop | None) -> None:
    reason, detail = drop or (NO_EMAIL_OR_PHONE, None)
    for event in events:
        out.drop(reason, event.index, detail=detail)


def _batch_key(batch: UserBatch) -> str:
    """What identifies the batch in fallback unique ids: its request id, else its content."""
    if batch.batch_key:
        return batch.batch_key
    try:
        content = _encoder.encode(batch)
    except UnicodeEncodeError:  # lone surrogates, in batches built by code rather than decoded
        content = repr(batch).encode("utf-8", "surrogatepass")
    return hashlib.sha256(content).hexdigest()
