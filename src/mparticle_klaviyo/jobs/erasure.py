"""An mParticle erasure request -> one durable job that deletes the person in Klaviyo.

The job holds only what delivery needs (mParticle's request id, the subject's email and phone);
it is keyed by the request id, so mParticle re-sending the same request queues it once.
"""

from __future__ import annotations

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.plan import profile_key, same_account
from mparticle_klaviyo.mapping.profile import subject_identifiers
from mparticle_klaviyo.mparticle.dsr import ErasureRequest
from mparticle_klaviyo.store.base import NewJob

ERASURE = "erasure"


class Erasure(msgspec.Struct, frozen=True, kw_only=True):
    """What an erasure job stores: who to delete, by email and/or phone."""

    request_id: str
    email: str | None = None
    phone_number: str | None = None
    regulation: str | None = None

    def profile_keys(self) -> list[str]:
        """The profile keys the person's jobs may carry: by email, and by phone."""
        keys = [profile_key(self.email, None), profile_key(None, self.phone_number)]
        return [key for key in keys if key]


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Erasure)


def plan_erasure(request: ErasureRequest, connection: Connection) -> NewJob:
    """The erasure job; InputError when the subject has no email or phone Klaviyo could find."""
    mapping = same_account(connection, request.settings).mapping
    email, phone = subject_identifiers(request.identities, mapping)
    if email is None and phone is None:
        wanted = f"{mapping.email_identity!r} (an email) or {mapping.phone_identity!r} (a phone)"
        raise InputError("/subject_identities", f"needs the raw identity {wanted}")
    erasure = Erasure(request_id=request.request_id, email=email, phone_number=phone, regulation=request.regulation)
    return NewJob(
        connection=connection.name,
        key=f"erasure:{request.request_id}",
        profile_key=profile_key(email, phone),
        kind=ERASURE,
        payload=_encoder.encode(erasure),
    )


def decode_erasure_job(payload: bytes) -> Erasure:
    """The stored erasure of a job."""
    return _decoder.decode(payload)
