"""Firehose data subject requests (``dsr_processing_request``): only erasures are accepted.

mParticle sends them to partners whose registration declares ``dsr_processing_registration``
(research/mparticle-input.md section 3.9). Identities arrive as ``{type: {encoding, value}}``;
only ``raw`` values name a person Klaviyo can find.
"""

from __future__ import annotations

from typing import Any

import msgspec

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.json_errors import decode_checked
from mparticle_klaviyo.mparticle.firehose import Account
from mparticle_klaviyo.mparticle.names import canonical_identity

DSR_PROCESSING_REQUEST = "dsr_processing_request"
ERASURE = "erasure"


class DsrIdentity(msgspec.Struct):
    """One subject identity: its value and how it is encoded (``raw``, or a hash)."""

    value: str
    encoding: str = "raw"


class DsrProcessingRequest(msgspec.Struct):
    """The wire form of ``dsr_processing_request``."""

    type: str
    id: str | None = None
    timestamp_ms: int | float | None = None
    account: Account | None = None
    subject_request_id: str | None = None
    subject_request_type: str | None = None
    submitted_time: Any = None
    subject_identities: dict[str, DsrIdentity] | None = None
    api_version: str | None = None
    regulation: str | None = None


class ErasureRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An erasure to forward: mParticle's request id, the subject's raw identities, the settings."""

    request_id: str
    identities: dict[str, str]
    regulation: str | None = None
    settings: dict[str, str] | None = None


_decoder = msgspec.json.Decoder(DsrProcessingRequest)


def decode_erasure(raw: bytes) -> ErasureRequest:
    """Decode a ``dsr_processing_request``; an InputError names what is missing or not an erasure."""
    request = decode_checked(_decoder, raw)
    if request.subject_request_type != ERASURE:
        got = request.subject_request_type
        raise InputError("/subject_request_type", f"only {ERASURE!r} requests are supported, got {got!r}")
    if not request.subject_request_id:
        raise InputError("/subject_request_id", "required field is missing")
    identities = {
        canonical_identity(name): identity.value.strip()
        for name, identity in (request.subject_identities or {}).items()
        if identity.encoding.lower() == "raw" and identity.value.strip()
    }
    if not identities:
        raise InputError("/subject_identities", "needs at least one raw identity")
    settings = request.account.account_settings if request.account else None
    return ErasureRequest(
        request_id=request.subject_request_id,
        identities=identities,
        regulation=request.regulation,
        settings=settings,
    )
