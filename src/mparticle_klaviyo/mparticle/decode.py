"""Bytes -> ``UserBatch``es: one JSON document that is a batch, a bulk array or a Firehose request."""

from __future__ import annotations

import msgspec

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.json_errors import decode_checked, syntax_problem
from mparticle_klaviyo.mparticle.batch import Batch
from mparticle_klaviyo.mparticle.firehose import (
    EVENT_PROCESSING_REQUEST,
    Envelope,
    EventProcessingRequest,
)
from mparticle_klaviyo.mparticle.from_batch import normalize_batch
from mparticle_klaviyo.mparticle.from_firehose import normalize_firehose
from mparticle_klaviyo.mparticle.model import UserBatch

_envelope = msgspec.json.Decoder(Envelope)
_batch = msgspec.json.Decoder(Batch)
_bulk = msgspec.json.Decoder(list[Batch])
_firehose = msgspec.json.Decoder(EventProcessingRequest)
_WHITESPACE = b" \t\r\n"


def decode_document(raw: bytes) -> list[UserBatch]:
    """Decode a batch object, an array of batches, or a Firehose ``event_processing_request``.

    Raises ``InputError`` naming the offending field with a JSON pointer.
    """
    first = raw.lstrip(_WHITESPACE)[:1]
    if first == b"[":
        return [normalize_batch(b) for b in decode_checked(_bulk, raw)]
    if first == b"{":
        return [_decode_object(raw)]
    if not first:
        raise InputError("", "empty document: expected a JSON object or array")
    problem = syntax_problem(raw)  # malformed JSON, or a well-formed scalar
    if problem is not None:
        raise problem.to_error()
    raise InputError("", "expected a JSON object (a batch or Firehose request) or an array of batches")


def decode_batch(raw: bytes) -> UserBatch:
    """Decode exactly one JSON batch object (the Events API ``/v2/events`` body)."""
    return normalize_batch(decode_checked(_batch, raw))


def decode_bulk(raw: bytes) -> list[UserBatch]:
    """Decode a JSON array of batches (the Events API ``/v2/bulkevents`` body)."""
    return [normalize_batch(b) for b in decode_checked(_bulk, raw)]


def decode_firehose(raw: bytes) -> UserBatch:
    """Decode a Firehose ``event_processing_request``."""
    return normalize_firehose(decode_checked(_firehose, raw))


def _decode_object(raw: bytes) -> UserBatch:
    """Route a JSON object by its Firehose ``type``; objects without one are batches."""
    kind = decode_checked(_envelope, raw).type
    if kind is None:
        return normalize_batch(_checked_batch(decode_checked(_batch, raw)))
    if kind == EVENT_PROCESSING_REQUEST:
        return normalize_firehose(decode_checked(_firehose, raw))
    raise InputError(
        "/type",
        f"{kind!r} is not an event message (expected {EVENT_PROCESSING_REQUEST!r} or a batch)",
    )


def _checked_batch(batch: Batch) -> Batch:
    """Reject JSON objects that share no field with a batch (an HTTP capture, a schema ...)."""
    if any(getattr(batch, field) is not None for field in Batch.__struct_fields__):
        return batch
    raise InputError(
        "",
        "not an mParticle batch: it has none of the fields " + ", ".join(Batch.__struct_fields__),
    )
