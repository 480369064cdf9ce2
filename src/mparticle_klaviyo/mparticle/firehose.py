"""Wire models of mParticle Firehose messages (research/mparticle-input.md section 3).

Firehose names differ from batch names (``other10`` not ``other_id_10``, ``attributes`` not
``custom_attributes``, ``product_action`` events not ``commerce_event``); the normaliser in
``mparticle.normalize`` maps both onto one model.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mparticle_klaviyo.mparticle.batch import ConsentEntry, Promotion

Number = int | float

EVENT_PROCESSING_REQUEST = "event_processing_request"
MODULE_REGISTRATION_REQUEST = "module_registration_request"


class Envelope(msgspec.Struct):
    """The fields every Firehose message has; used to route a message by ``type``."""

    type: str | None = None
    id: str | None = None


class Account(msgspec.Struct):
    """``account``: connection settings arrive as strings in ``account_settings``."""

    account_id: int | str | None = None
    account_settings: dict[str, str] | None = None


class FirehoseIdentity(msgspec.Struct):
    """A user identity; only ``raw`` encodings carry usable emails and phones."""

    type: str
    value: str | None = None
    encoding: str = "raw"


class RuntimeEnvironment(msgspec.Struct):
    """``runtime_environment``: its ``type`` is the platform."""

    type: str | None = None


# A consent purpose's state has the same fields in both shapes.
FirehoseConsent = ConsentEntry


class FirehoseConsentState(msgspec.Struct):
    """``consent_state`` with Firehose's wire names."""

    gdpr_consent_state: dict[str, FirehoseConsent] | None = None
    ccpa_consent_state: dict[str, FirehoseConsent] | None = None


class FirehoseProduct(msgspec.Struct):
    """A product of a ``product_action`` or ``impression`` event."""

    id: str | Number | None = None
    name: str | None = None
    brand: str | None = None
    category: str | None = None
    variant: str | None = None
    position: Number | None = None
    price: Number | str | None = None
    quantity: Number | str | None = None
    coupon_code: str | None = None
    total_amount: Number | str | None = None
    attributes: dict[str, Any] | None = None


# Promotions have the same fields in both shapes.
FirehosePromotion = Promotion


class FirehoseImpression(msgspec.Struct):
    """One impression list of an ``impression`` event."""

    impression_list_name: str | None = None
    products: list[FirehoseProduct] | None = None


class FirehoseEvent(msgspec.Struct):
    """Any Firehose event: the union of the fields of the types we forward."""

    type: str
    id: str | None = None
    timestamp_ms: Number | None = None
    source_id: str | None = None
    attributes: dict[str, Any] | None = None
    name: str | None = None
    screen_name: str | None = None
    session_length_ms: Number | None = None
    application_state: str | None = None
    action: str | None = None
    transaction_id: str | Number | None = None
    affiliation: str | None = None
    total_amount: Number | str | None = None
    tax_amount: Number | str | None = None
    shipping_amount: Number | str | None = None
    currency_code: str | None = None
    coupon_code: str | None = None
    products: list[FirehoseProduct] | None = None
    promotions: list[FirehosePromotion] | None = None
    impressions: list[FirehoseImpression] | None = None


class EventProcessingRequest(msgspec.Struct):
    """``event_processing_request``: one user's events plus the connection's settings."""

    type: str
    id: str | None = None
    timestamp_ms: Number | None = None
    account: Account | None = None
    user_identities: list[FirehoseIdentity] | None = None
    user_attributes: dict[str, Any] | None = None
    user_attribute_lists: dict[str, list[Any]] | None = None
    runtime_environment: RuntimeEnvironment | None = None
    events: list[FirehoseEvent] | None = None
    consent_state: FirehoseConsentState | None = None
    mpid: int | str | None = None
