"""JSON batch (Events API inbound or Webhook/S3 outbound) -> ``UserBatch``."""

from __future__ import annotations

from mparticle_klaviyo.mparticle import batch as wire
from mparticle_klaviyo.mparticle.items import batch_item, make_promotion
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
    batch_transition,
    canonical_identity,
    canonical_platform,
)


def normalize_batch(batch: wire.Batch) -> UserBatch:
    """Normalise one decoded batch."""
    return UserBatch(
        source="batch",
        identities=_identities(batch.user_identities),
        user_attributes=batch.user_attributes or {},
        platform=_platform(batch),
        consents=_consents(batch.consent_state),
        events=tuple(_event(i, e) for i, e in enumerate(batch.events or ())),
        mpid=as_text(batch.mpid),
        batch_key=as_text(batch.source_request_id) or as_text(batch.batch_id),
    )


def _identities(
    raw: dict[str, str | int | float | None] | list[wire.OutboundIdentity] | None,
) -> dict[str, str]:
    """Both identity shapes as ``{canonical type: value}``; empty values are left out."""
    pairs = raw.items() if isinstance(raw, dict) else ((i.identity_type, i.identity) for i in raw or ())
    found: dict[str, str] = {}
    for kind, value in pairs:
        text = as_text(value)
        if text is not None:
            found[canonical_identity(kind)] = text
    return found


def _platform(batch: wire.Batch) -> str:
    """The batch's platform; server-to-server batches without device info count as Custom Feeds."""
    if batch.device_info and batch.device_info.platform:
        return canonical_platform(batch.device_info.platform)
    if batch.application_info and batch.application_info.os:
        return canonical_platform(batch.application_info.os)
    return "customfeeds"


def _consents(state: wire.BatchConsentState | None) -> tuple[Consent, ...]:
    """GDPR purposes and CCPA's ``data_sale_opt_out``, purposes lower-cased."""
    if state is None:
        return ()
    entries = {**(state.gdpr or {}), **(state.ccpa or {})}
    return tuple(
        Consent(purpose.lower(), entry.consented, entry.timestamp_unixtime_ms) for purpose, entry in entries.items()
    )


def _event(index: int, event: wire.BatchEvent) -> Event:
    """One ``{event_type, data}`` entry."""
    data = event.data
    kind = "commerce" if event.event_type == "commerce_event" else event.event_type
    return Event(
        type=kind,
        index=index,
        timestamp_ms=data.timestamp_unixtime_ms,
        source_message_id=data.source_message_id or None,
        name=data.event_name if kind == "custom_event" else data.screen_name,
        attributes=data.custom_attributes or {},
        session_duration_ms=data.session_duration_ms,
        transition=batch_transition(data.application_transition_type, data.is_first_run, data.is_upgrade),
        currency_code=data.currency_code,
        commerce=_commerce(data) if kind == "commerce" else None,
    )


def _commerce(data: wire.EventData) -> Commerce | None:
    """The one commerce part a commerce event carries, or None when it has none."""
    if data.product_action is not None:
        action = data.product_action
        return Commerce(
            kind="product",
            action=action.action,
            transaction_id=as_text(action.transaction_id),
            affiliation=action.affiliation,
            total_amount=as_number(action.total_amount),
            tax_amount=as_number(action.tax_amount),
            shipping_amount=as_number(action.shipping_amount),
            coupon_code=action.coupon_code,
            items=tuple(batch_item(p) for p in action.products or ()),
        )
    if data.promotion_action is not None:
        promos = data.promotion_action.promotions or ()
        return Commerce(
            kind="promotion",
            action=data.promotion_action.action,
            promotions=tuple(make_promotion(p) for p in promos),
        )
    if data.product_impressions:
        return Commerce(
            kind="impression",
            action="impression",
            impressions=tuple(
                Impression(
                    list_name=i.product_impression_list,
                    items=tuple(batch_item(p) for p in i.products or ()),
                )
                for i in data.product_impressions
            ),
        )
    return None
