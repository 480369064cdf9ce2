"""What mapping produces: Klaviyo-ready events and subscriptions, plus notices for the rest."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# Reasons an event (or a consent) is not forwarded, and reasons for warnings.
UNSUPPORTED_EVENT_TYPE = "unsupported_event_type"
UNSUPPORTED_PLATFORM = "unsupported_platform"
NO_EMAIL_OR_PHONE = "no_email_or_phone"
INVALID_VALUE = "invalid_value"
MISSING_EVENT_NAME = "missing_event_name"
UNSUPPORTED_COMMERCE_ACTION = "unsupported_commerce_action"
UNSUPPORTED_TRANSITION = "unsupported_transition"
LIMIT_EXCEEDED = "limit_exceeded"
CONSENT_REMOVAL_NOT_SUPPORTED = "consent_removal_not_supported"
CONSENT_NEEDS_LIST_ID = "consent_needs_list_id"
CONSENT_MISSING_IDENTIFIER = "consent_missing_identifier"
INVALID_PHONE = "invalid_phone"
INVALID_EMAIL = "invalid_email"
INVALID_CURRENCY = "invalid_currency"
INVALID_ATTRIBUTE = "invalid_attribute"
ATTRIBUTE_SHADOWED = "attribute_shadowed"
NEAR_RESERVED_KEY = "near_reserved_key"


class Notice(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """An event or consent not forwarded (``dropped``), or data left out of one (``warning``)."""

    kind: Literal["dropped", "warning"]
    reason: str
    event: int | str | None = None
    consent: str | None = None
    detail: str | None = None


class MappedEvent(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One Klaviyo event: JSON:API event ``attributes`` without the profile, and the profile.

    ``profile`` is the profile's ``attributes`` object, shared by all events of a batch.
    """

    # gc=False: its dicts never refer back to it, so it is never in a reference cycle; delivery
    # holds thousands waiting to be packed, and the collector need not walk them.
    unique_id: str
    attributes: dict[str, Any]
    profile: dict[str, Any]
    index: int


class PlannedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An mParticle event that will be sent, known before it is built: its first Klaviyo metric and id."""

    index: int
    unique_id: str
    metric: str


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """Granted consent for one profile: Klaviyo channels to subscribe (``email``/``sms``/``push``)."""

    channels: tuple[str, ...]
    email: str | None = None
    phone_number: str | None = None
    # Klaviyo takes it on /client/subscriptions profiles only (not in bulk subscription jobs).
    external_id: str | None = None
    # The latest time of the granting purposes: a later change of consent is a new job.
    timestamp_ms: float | None = None


class Unsubscription(msgspec.Struct, frozen=True, kw_only=True):
    """Revoked consent for one profile (``consent_removal``): Klaviyo channels to unsubscribe."""

    channels: tuple[str, ...]
    email: str | None = None
    phone_number: str | None = None
    timestamp_ms: float | None = None


class MappedBatch(msgspec.Struct, kw_only=True):
    """The mapping of one user batch."""

    events: list[MappedEvent] = msgspec.field(default_factory=list)
    # What plan_batch fills instead of ``events``: the events to send, not yet built.
    planned: list[PlannedEvent] = msgspec.field(default_factory=list)
    # The batch's profile attributes (plan_batch only: mapped events carry their own).
    profile: dict[str, Any] | None = None
    subscriptions: list[Subscription] = msgspec.field(default_factory=list)
    unsubscriptions: list[Unsubscription] = msgspec.field(default_factory=list)
    notices: list[Notice] = msgspec.field(default_factory=list)

    def drop(self, reason: str, event: int | str | None = None, detail: str | None = None) -> None:
        """Record that an event was not forwarded."""
        self.notices.append(Notice(kind="dropped", reason=reason, event=event, detail=detail))

    def warn(self, reason: str, event: int | str | None = None, detail: str | None = None) -> None:
        """Record data left out of an otherwise forwarded event or profile."""
        self.notices.append(Notice(kind="warning", reason=reason, event=event, detail=detail))
