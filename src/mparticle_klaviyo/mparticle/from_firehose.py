"""Firehose ``event_processing_request`` -> ``UserBatch``."""

from __future__ import annotations

from typing import Any

from mparticle_klaviyo.mparticle import firehose as wire
from mparticle_klaviyo.mparticle.items import firehose_item, make_promotion
from mparticle_klaviyo.mparticle.model import (
    Commerce,
    Consent,
    Event,
    Impression,
    UserBatch,
)
from mparticle_klaviyo.mparticle.names import (
    as_number,
    as_text,
    canonical_identity,
    canonical_platform,
)

_COMMERCE_TYPES = {"product_action", "promotion_action", "impression"}


def normalize_firehose(request: wire.EventProcessingRequest) -> UserBatch:
    """Normalise one decoded event processing request."""
    runtime = request.runtime_environment
    account = request.account
    return UserBatch(
        source="firehose",
        identities=_identities(request.user_identities),
        user_attributes=_attributes(request.user_attributes, request.user_attribute_lists),
        platform=canonical_platform(runtime.type) if runtime and runtime.type else "customfeeds",
        consents=_consents(request.consent_state),
        events=tuple(_event(i, e) for i, e in enumerate(request.events or ())),
        mpid=as_text(request.mpid),
        batch_key=request.id,
        settings=account.account_settings if account else None,
    )


def _identities(raw: list[wire.FirehoseIdentity] | None) -> dict[str, str]:
    """Raw-encoded identities only: a hashed email or phone cannot be sent to Klaviyo."""
    return {canonical_identity(i.type): i.value for i in raw or () if i.value and i.encoding.lower() == "raw"}


def _attributes(single: dict[str, Any] | None, lists: dict[str, list[Any]] | None) -> dict[str, Any]:
    """Firehose sends list-valued attributes separately; batches mix them, so merge here."""
    merged: dict[str, Any] = dict(single or {})
    merged.update(lists or {})
    return merged


def _consents(state: wire.FirehoseConsentState | None) -> tuple[Consent, ...]:
    """GDPR purposes and CCPA's ``data_sale_opt_out``, purposes lower-cased."""
    if state is None:
        return ()
    entries = {**(state.gdpr_consent_state or {}), **(state.ccpa_consent_state or {})}
    return tuple(
        Consent(
            purpose.lower(),
            entry.consented,
            entry.timestamp_unixtime_ms,
        )
        for purpose, entry in entries.items()
    )


def _event(index: int, event: wire.FirehoseEvent) -> Event:
    """One Firehose event."""
    kind = "commerce" if event.type in _COMMERCE_TYPES else event.type
    return Event(
        type=kind,
        index=index,
        timestamp_ms=event.timestamp_ms,
        source_message_id=None,
        firehose_id=event.id or None,
        name=event.name if kind == "custom_event" else event.screen_name,
        attributes=event.attributes or {},
        session_duration_ms=event.session_length_ms,
        transition=event.application_state,
        currency_code=event.currency_code,
        commerce=_commerce(event) if kind == "commerce" else None,
    )


def _commerce(event: wire.FirehoseEvent) -> Commerce | None:
    """The commerce part of a ``product_action``, ``promotion_action`` or ``impression``."""
    if event.type == "product_action":
        return Commerce(
            kind="product",
            action=event.action or "unknown",
            transaction_id=as_text(event.transaction_id),
            affiliation=event.affiliation,
            total_amount=as_number(event.total_amount),
            tax_amount=as_number(event.tax_amount),
            shipping_amount=as_number(event.shipping_amount),
            coupon_code=event.coupon_code,
            items=tuple(firehose_item(p) for p in event.products or ()),
        )
    if event.type == "promotion_action":
        return Commerce(
            kind="promotion",
            action=event.action or "unknown",
            promotions=tuple(make_promotion(p) for p in event.promotions or ()),
        )
    return Commerce(
        kind="impression",
        action="impression",
        impressions=tuple(
            Impression(list_name=i.impression_list_name, items=tuple(firehose_item(p) for p in i.products or ()))
            for i in event.impressions or ()
        ),
    )
