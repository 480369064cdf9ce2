"""Small builders of mParticle input for the mapping, payload, CLI and conformance tests."""

from __future__ import annotations

import json
from typing import Any

from mparticle_klaviyo.mapping.batch import map_batch
from mparticle_klaviyo.mapping.result import MappedBatch, MappedEvent
from mparticle_klaviyo.mapping.settings import MappingSettings
from mparticle_klaviyo.mparticle.decode import decode_document
from mparticle_klaviyo.mparticle.model import UserBatch

NOW_MS = 1_800_000_000_000.0  # 2027-01-15T08:00:00Z: the fixed "now" of these tests
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z
T0_ISO = "2023-11-14T22:13:20.000+00:00"
EMAIL = "jane@example.com"
PHONE = "+15555550100"

Doc = dict[str, Any]


def ev(event_type: str, **data: Any) -> Doc:
    """One ``{event_type, data}`` entry; the time defaults to ``T0``."""
    data.setdefault("timestamp_unixtime_ms", T0)
    return {"event_type": event_type, "data": data}


def custom(name: str = "Viewed Article", **data: Any) -> Doc:
    """A custom event."""
    return ev("custom_event", event_name=name, custom_event_type="other", **data)


def commerce(**data: Any) -> Doc:
    """A commerce event (give product_action, promotion_action or product_impressions)."""
    return ev("commerce_event", **data)


def product(sku: str, price: float, quantity: float = 1, **extra: Any) -> Doc:
    """A product of a product action; its total is price x quantity."""
    return {"id": sku, "name": f"Product {sku}", "price": price, "quantity": quantity, **extra}


def batch_doc(
    *events: Doc,
    identities: dict[str, Any] | list[Doc] | None = None,
    attributes: dict[str, Any] | None = None,
    platform: str | None = "iOS",
    consent: Doc | None = None,
    **extra: Any,
) -> Doc:
    """An inbound JSON batch: email identity and iOS unless told otherwise."""
    doc: Doc = {
        "events": list(events),
        "user_identities": {"email": EMAIL} if identities is None else identities,
        "environment": "production",
    }
    if attributes is not None:
        doc["user_attributes"] = attributes
    if platform is not None:
        doc["device_info"] = {"platform": platform}
    if consent is not None:
        doc["consent_state"] = consent
    doc.update(extra)
    return doc


def gdpr(**purposes: bool) -> Doc:
    """A ``consent_state`` with GDPR purposes."""
    return {"gdpr": {p: {"consented": c, "timestamp_unixtime_ms": T0} for p, c in purposes.items()}}


def encode(doc: Any) -> bytes:
    """JSON bytes of a document (non-ASCII kept as is, lone surrogates escaped)."""
    return json.dumps(doc, ensure_ascii=False, allow_nan=False).encode("utf-8", "surrogatepass")


def decode_one(doc: Doc) -> UserBatch:
    """Decode a document that holds exactly one batch."""
    batches = decode_document(encode(doc))
    assert len(batches) == 1
    return batches[0]


def map_doc(doc: Doc, settings: MappingSettings | None = None, now_ms: float = NOW_MS) -> MappedBatch:
    """Decode and map one batch document."""
    return map_batch(decode_one(doc), settings or MappingSettings(), now_ms)


def metric(event: MappedEvent) -> str:
    """The Klaviyo metric name of a mapped event."""
    name = event.attributes["metric"]["data"]["attributes"]["name"]
    assert isinstance(name, str)
    return name


def metrics(result: MappedBatch) -> list[str]:
    """The metric names of all mapped events, in order."""
    return [metric(e) for e in result.events]


def only(result: MappedBatch) -> MappedEvent:
    """The single mapped event of a result that has no drops."""
    assert [n for n in result.notices if n.kind == "dropped"] == []
    assert len(result.events) == 1
    return result.events[0]


def drops(result: MappedBatch) -> list[tuple[str, int | str | None]]:
    """``(reason, event index)`` of every dropped-event notice."""
    return [(n.reason, n.event) for n in result.notices if n.kind == "dropped"]


def warnings(result: MappedBatch) -> list[str]:
    """Reasons of every warning."""
    return [n.reason for n in result.notices if n.kind == "warning"]
