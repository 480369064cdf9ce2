"""Consent purposes -> Klaviyo subscriptions (email, sms, push) and consent profile properties.

mParticle has two consent shapes. GDPR purposes are grants: ``consented: true`` grants the
purpose, and only grants are forwarded (Klaviyo's public-key API cannot remove consent, and
mParticle's integration documents that "consent removal is not supported"). CCPA's one purpose,
``data_sale_opt_out``, is the reverse: ``consented: true`` means the user opted OUT of the sale
of their data. It never grants anything; its state is the profile property ``data_sale_opt_out``.
With ``consent_removal`` (a private key) a revoked email/SMS purpose unsubscribes the profile.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from mparticle_klaviyo.mapping.result import (
    ATTRIBUTE_SHADOWED,
    CONSENT_MISSING_IDENTIFIER,
    CONSENT_NEEDS_LIST_ID,
    CONSENT_REMOVAL_NOT_SUPPORTED,
    MappedBatch,
    Notice,
    Subscription,
    Unsubscription,
)
from mparticle_klaviyo.mapping.settings import CCPA_PURPOSE, MappingSettings
from mparticle_klaviyo.mparticle.model import Consent

# mParticle/legacy Klaviyo consent channel -> Klaviyo subscription channel.
SUBSCRIPTION_CHANNELS = {"email": "email", "sms": "sms", "mobile": "push"}
# Channels a revoked purpose can unsubscribe (consent_removal): Klaviyo's bulk unsubscribe takes
# email and SMS by the profile's email or phone; push needs the device tokens, which we lack.
REMOVABLE_CHANNELS = ("email", "sms")
# Channels with no subscription equivalent: recorded in this custom profile property.
CONSENT_PROPERTY = "consent"
# The CCPA opt-out state (true = opted out of sale), so Klaviyo segments and ad syncs can honour it.
CCPA_PROPERTY = CCPA_PURPOSE


class ConsentChanges(NamedTuple):
    """Mapped channels a batch grants and revokes, each with the latest time of its purposes."""

    granted: list[str]
    revoked: list[str]
    granted_ms: float | None
    revoked_ms: float | None


def consent_changes(consents: tuple[Consent, ...], settings: MappingSettings, out: MappedBatch) -> ConsentChanges:
    """Channels granted and revoked; a revocation Klaviyo cannot receive is reported, not forwarded.

    With ``consent_removal`` (server mode) a revoked email or SMS purpose is an unsubscription;
    otherwise, and for the other channels, a revocation is ``consent_removal_not_supported``.
    A channel granted by one purpose and revoked by another stays granted.
    """
    changes = ConsentChanges([], [], None, None)
    for consent in consents:
        if consent.purpose == CCPA_PURPOSE:
            continue  # an opt-out, never a grant, even if a mapping built in code names it
        channel = settings.consent_mapping.get(consent.purpose)
        if channel is None:
            continue
        if consent.consented:
            changes = _with(changes, channel, consent.timestamp_ms, granted=True)
        elif settings.consent_removal and channel in REMOVABLE_CHANNELS:
            changes = _with(changes, channel, consent.timestamp_ms, granted=False)
        else:
            out.notices.append(
                Notice(kind="dropped", reason=CONSENT_REMOVAL_NOT_SUPPORTED, consent=consent.purpose, detail=channel)
            )
    revoked = [c for c in changes.revoked if c not in changes.granted]
    return changes._replace(revoked=revoked, revoked_ms=changes.revoked_ms if revoked else None)


def _with(changes: ConsentChanges, channel: str, stamp: float | None, *, granted: bool) -> ConsentChanges:
    channels = changes.granted if granted else changes.revoked
    if channel not in channels:
        channels.append(channel)
    latest = changes.granted_ms if granted else changes.revoked_ms
    if stamp is None or (latest is not None and stamp <= latest):
        return changes
    return changes._replace(granted_ms=stamp) if granted else changes._replace(revoked_ms=stamp)


def apply_consent(
    channels: list[str],
    profile: dict[str, Any],
    settings: MappingSettings,
    out: MappedBatch,
    timestamp_ms: float | None = None,
) -> None:
    """Add the ``consent`` property for web/directmail and a subscription for the rest."""
    recorded = [c for c in channels if c not in SUBSCRIPTION_CHANNELS]
    if recorded:
        _set_property(profile, CONSENT_PROPERTY, recorded, "the granted consent channels", out)
    wanted = [c for c in channels if c in SUBSCRIPTION_CHANNELS]
    if not wanted:
        return
    if settings.list_id is None and not settings.server_mode:
        for channel in wanted:
            out.notices.append(Notice(kind="dropped", reason=CONSENT_NEEDS_LIST_ID, consent=channel))
        return
    subscribable = _klaviyo_channels(wanted, profile, out)
    if subscribable:
        who = _identifiers(profile)
        out.subscriptions.append(
            Subscription(
                channels=subscribable, external_id=profile.get("external_id"), timestamp_ms=timestamp_ms, **who
            )
        )


def apply_revocations(
    channels: list[str], profile: dict[str, Any], out: MappedBatch, timestamp_ms: float | None = None
) -> None:
    """Unsubscribe the profile from the revoked email/SMS channels it has an identifier for."""
    removable = _klaviyo_channels(channels, profile, out)
    if removable:
        out.unsubscriptions.append(
            Unsubscription(channels=removable, timestamp_ms=timestamp_ms, **_identifiers(profile))
        )


def _klaviyo_channels(channels: list[str], profile: dict[str, Any], out: MappedBatch) -> tuple[str, ...]:
    """Klaviyo's names of the channels the profile has an identifier for (the rest reported)."""
    return tuple(SUBSCRIPTION_CHANNELS[c] for c in channels if _has_identifier(c, profile, out))


def _identifiers(profile: dict[str, Any]) -> dict[str, Any]:
    return {"email": profile.get("email"), "phone_number": profile.get("phone_number")}


def apply_ccpa(consents: tuple[Consent, ...], profile: dict[str, Any], out: MappedBatch) -> None:
    """Record the CCPA state as the ``data_sale_opt_out`` property, opted out or not.

    Both values are sent so that a user who opts back in no longer shows as opted out.
    """
    for consent in consents:
        if consent.purpose == CCPA_PURPOSE:
            _set_property(profile, CCPA_PROPERTY, consent.consented, "the CCPA consent state", out)


def _set_property(profile: dict[str, Any], name: str, value: Any, source: str, out: MappedBatch) -> None:
    """Set a custom property that consent owns; a user attribute of that name loses (reported)."""
    properties = profile.setdefault("properties", {})
    if name in properties:
        out.warn(ATTRIBUTE_SHADOWED, detail=f"user attribute {name!r} is shadowed by {source}")
    properties[name] = value


def _has_identifier(channel: str, profile: dict[str, Any], out: MappedBatch) -> bool:
    """Email consent needs an email, SMS a phone; push needs either (Klaviyo's profile rule)."""
    needed = {"email": ("email",), "sms": ("phone_number",)}.get(channel, ("email", "phone_number"))
    if any(profile.get(field) for field in needed):
        return True
    out.notices.append(
        Notice(
            kind="dropped",
            reason=CONSENT_MISSING_IDENTIFIER,
            consent=channel,
            detail=f"needs {' or '.join(needed)}",
        )
    )
    return False
