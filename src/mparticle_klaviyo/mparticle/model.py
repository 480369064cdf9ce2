"""The one internal model behind every input: a user's batch of events, normalised.

Firehose requests and JSON batches (inbound or outbound) both become a ``UserBatch``. It is
what the mapper reads and what a store keeps, so a mapping fix plus a redrive repairs old data.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

# Canonical event types of the six the integration supports (Firehose's three commerce types
# all become "commerce"); any other input type is kept verbatim and dropped by the mapper.
SUPPORTED_EVENT_TYPES = frozenset(
    {
        "application_state_transition",
        "commerce",
        "custom_event",
        "screen_view",
        "session_start",
        "session_end",
    }
)


class Consent(msgspec.Struct, frozen=True):
    """One consent purpose (lower-cased, as mParticle's SDKs send it) and its state."""

    purpose: str
    consented: bool
    timestamp_ms: float | None = None


class Item(msgspec.Struct, frozen=True, kw_only=True):
    """A product of a commerce event."""

    id: str | None = None
    name: str | None = None
    brand: str | None = None
    category: str | None = None
    variant: str | None = None
    position: float | None = None
    price: float | None = None
    quantity: float | None = None
    coupon_code: str | None = None
    total: float | None = None
    attributes: dict[str, Any] = {}


class PromotionItem(msgspec.Struct, frozen=True, kw_only=True):
    """A promotion of a promotion event."""

    id: str | None = None
    name: str | None = None
    creative: str | None = None
    position: str | None = None


class Impression(msgspec.Struct, frozen=True, kw_only=True):
    """One product impression list."""

    list_name: str | None = None
    items: tuple[Item, ...] = ()


class Commerce(msgspec.Struct, frozen=True, kw_only=True):
    """The commerce part of a commerce event: a product action, a promotion or impressions."""

    kind: Literal["product", "promotion", "impression"]
    action: str
    transaction_id: str | None = None
    affiliation: str | None = None
    total_amount: float | None = None
    tax_amount: float | None = None
    shipping_amount: float | None = None
    coupon_code: str | None = None
    items: tuple[Item, ...] = ()
    promotions: tuple[PromotionItem, ...] = ()
    impressions: tuple[Impression, ...] = ()


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One event, whatever input it came from."""

    type: str
    index: int
    timestamp_ms: float | None = None
    source_message_id: str | None = None
    firehose_id: str | None = None
    name: str | None = None
    attributes: dict[str, Any] = {}
    session_duration_ms: float | None = None
    transition: str | None = None
    currency_code: str | None = None
    commerce: Commerce | None = None


class UserBatch(msgspec.Struct, frozen=True, kw_only=True):
    """One user's events with identities, attributes, platform and consent."""

    source: Literal["batch", "firehose"]
    identities: dict[str, str] = {}
    user_attributes: dict[str, Any] = {}
    platform: str = "customfeeds"
    consents: tuple[Consent, ...] = ()
    events: tuple[Event, ...] = ()
    mpid: str | None = None
    batch_key: str | None = None
    settings: dict[str, str] | None = None
