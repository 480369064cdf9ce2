"""Consent purposes -> Klaviyo subscriptions (email, sms, push) and consent profile properties.

mParticle has two consent shapes. GDPR purposes are grants: ``consented: true`` grants the
purpose, and only grants are forwarded (Klaviyo's public-key API cannot remove consent, and
mParticle's integration documents that "consent removal is not supported"). CCPA's one purpose,
``data_sale_opt_out``, is the reverse: ``consented: true`` means the user opted OUT of the sale
of their data. It never grants anything; its state is the profile property ``data_sale_opt_out``.
"""

from __future__ import annotations

from typing import Any

from mparticle_klaviyo.mapping.result import (
    ATTRIBUTE_SHADOWED,
    CONSENT_MISSING_IDENTIFIER,
    CONSENT_NEEDS_LIST_ID,
    CONSENT_REMOVAL_NOT_SUPPORTED,
    MappedBatch,
    Notice,
    Subscription,
)
from mparticle_klaviyo.mapping.settings import CCPA_PURPOSE, MappingSettings
from mparticle_klaviyo.mparticle.model import Consent

# mParticle/legacy Klaviyo consent channel -> Klaviyo subscription channel.
SUBSCRIPTION_CHANNELS = {"email": "email", "sms": "sms", "mobile": "push"}
# Channels with no subscription equivalent: recorded in this custom profile property.
CONSENT_PROPERTY = "consent"
# The CCPA opt-out state (true = opted out of sale), so Klaviyo segments and ad syncs can honour it.
CCPA_PROPERTY = CCPA_PURPOSE


def granted_channels(consents: tuple[Consent, ...], settings: MappingSettings, out: MappedBatch) -> list[str]:
    """Mapped channels whose purpose is granted; a mapped revocation is reported, not forwarded."""
    channels: list[str] = []
    for consent in consents:
        if consent.purpose == CCPA_PURPOSE:
            continue  # an opt-out, never a grant, even if a mapping built in code names it
        channel = settings.consent_mapping.get(consent.purpose)
        if channel is None:
            continue
        if consent.consented:
            if channel not in channels:
                channels.append(channel)
        else:
            out.notices.append(
                Notice(
                    kind="dropped",
                    reason=CONSENT_REMOVAL_NOT_SUPPORTED,
                    consent=consent.purpose,
                    detail=channel,
                )
            )
    return channels


def apply_consent(channels: list[str], profile: dict[str, Any], settings: MappingSettings, out: MappedBatch) -> None:
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
    subscribable = [c for c in wanted if _has_identifier(c, profile, out)]
    if subscribable:
        out.subscriptions.append(
            Subscription(
                channels=tuple(SUBSCRIPTION_CHANNELS[c] for c in subscribable),
                email=profile.get("email"),
                phone_number=profile.get("phone_number"),
                external_id=profile.get("external_id"),
            )
        )


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
