"""Wire models of mParticle JSON batches (Events API inbound, Webhook/S3 outbound).

Only the fields the integration reads are declared; msgspec skips the rest, which keeps
decoding fast and tolerant of fields mParticle adds later. Types are as loose as real data
requires (research/mparticle-input.md section 4): ``mpid`` as number or string, attribute
values of any JSON type, ``user_identities`` as an object (inbound) or an array (outbound).
"""

from __future__ import annotations

from typing import Any

import msgspec

Number = int | float


class ConsentEntry(msgspec.Struct):
    """One consent purpose's state."""

    consented: bool
    timestamp_unixtime_ms: Number | None = None


class BatchConsentState(msgspec.Struct):
    """``consent_state``: GDPR purposes and the CCPA ``data_sale_opt_out`` purpose."""

    gdpr: dict[str, ConsentEntry] | None = None
    ccpa: dict[str, ConsentEntry] | None = None


class OutboundIdentity(msgspec.Struct):
    """One identity of an outbound batch's ``user_identities`` array."""

    identity_type: str
    identity: str | Number | None = None


class Product(msgspec.Struct):
    """A product in a commerce event."""

    id: str | Number | None = None
    name: str | None = None
    brand: str | None = None
    category: str | None = None
    variant: str | None = None
    position: Number | None = None
    price: Number | str | None = None
    quantity: Number | str | None = None
    coupon_code: str | None = None
    total_product_amount: Number | str | None = None
    custom_attributes: dict[str, Any] | None = None


class ProductAction(msgspec.Struct):
    """``product_action`` of a commerce event."""

    action: str
    checkout_step: Number | None = None
    checkout_options: str | None = None
    product_action_list: str | None = None
    product_list_source: str | None = None
    transaction_id: str | Number | None = None
    affiliation: str | None = None
    total_amount: Number | str | None = None
    tax_amount: Number | str | None = None
    shipping_amount: Number | str | None = None
    coupon_code: str | None = None
    products: list[Product] | None = None


class Promotion(msgspec.Struct):
    """One promotion of a ``promotion_action``."""

    id: str | Number | None = None
    name: str | None = None
    creative: str | None = None
    position: str | Number | None = None


class PromotionAction(msgspec.Struct):
    """``promotion_action`` of a commerce event."""

    action: str
    promotions: list[Promotion] | None = None


class ProductImpression(msgspec.Struct):
    """One entry of ``product_impressions``."""

    product_impression_list: str | None = None
    products: list[Product] | None = None


class EventData(msgspec.Struct):
    """``data`` of any batch event: the union of the fields of the types we forward."""

    timestamp_unixtime_ms: Number | None = None
    source_message_id: str | None = None
    event_id: int | str | None = None
    custom_attributes: dict[str, Any] | None = None
    event_name: str | None = None
    custom_event_type: str | None = None
    screen_name: str | None = None
    session_duration_ms: Number | None = None
    application_transition_type: str | None = None
    is_first_run: bool | None = None
    is_upgrade: bool | None = None
    currency_code: str | None = None
    product_action: ProductAction | None = None
    promotion_action: PromotionAction | None = None
    product_impressions: list[ProductImpression] | None = None


class BatchEvent(msgspec.Struct):
    """One ``{event_type, data}`` entry of ``events``."""

    event_type: str
    data: EventData = msgspec.field(default_factory=EventData)


class DeviceInfo(msgspec.Struct):
    """``device_info``: only the platform matters here."""

    platform: str | None = None


class ApplicationInfo(msgspec.Struct):
    """``application_info``: ``os`` is a fallback when ``device_info.platform`` is absent."""

    os: str | None = None


class Batch(msgspec.Struct):
    """An mParticle JSON batch, inbound or outbound."""

    events: list[BatchEvent] | None = None
    user_identities: dict[str, str | Number | None] | list[OutboundIdentity] | None = None
    user_attributes: dict[str, Any] | None = None
    consent_state: BatchConsentState | None = None
    device_info: DeviceInfo | None = None
    application_info: ApplicationInfo | None = None
    mpid: int | str | None = None
    source_request_id: str | None = None
    batch_id: int | str | None = None
    environment: str | None = None
