"""Accepted batches -> store jobs, and store jobs -> batches again (map at dispatch).

A job holds one mParticle event as normalised input: the user's batch with only that event
(framed as the user part, encoded once per batch, then the event), so delivery maps it, once,
with the code of the day, building each user's profile once however many jobs it has. Ingest only plans each batch
(``plan_batch``): the events to send with their keys and profile, and what to drop and why.
"""

from __future__ import annotations

import hashlib
from collections import Counter

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.errors import InputError, join_pointer
from mparticle_klaviyo.mapping.batch import plan_batch
from mparticle_klaviyo.mapping.result import MappedBatch, Subscription, Unsubscription
from mparticle_klaviyo.mparticle.model import Event, UserBatch
from mparticle_klaviyo.overrides import SETTINGS_POINTER, connection_for_request
from mparticle_klaviyo.store.base import NewJob

EVENT = "event"
_KEY_SEPARATOR = "\x1f"  # ASCII unit separator: cannot clash with ids, emails or metric names
SUBSCRIPTION = "subscription"
UNSUBSCRIPTION = "unsubscription"

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(UserBatch)
_json = msgspec.json.Encoder()
_json_decoder = msgspec.json.Decoder(UserBatch)
_event_decoder = msgspec.msgpack.Decoder(Event)
_json_event_decoder = msgspec.json.Decoder(Event)
# A framed payload starts with this byte, which neither a msgpack map nor JSON ("{") starts with,
# then the user part's length in 4 bytes.
_FRAMED = b"\x01"
_HEADER = 5


class Planned(msgspec.Struct, kw_only=True):
    """The jobs for some batches, and what ingest dropped (by reason) or warned about."""

    jobs: list[NewJob] = msgspec.field(default_factory=list)
    dropped: Counter[str] = msgspec.field(default_factory=Counter)
    warnings: Counter[str] = msgspec.field(default_factory=Counter)
    events: int = 0


def plan_jobs(
    batches: list[UserBatch], connection: Connection, now_ms: float, planned: Planned | None = None
) -> Planned:
    """Jobs for every forwardable event and consent grant of ``batches``.

    Raises ``InputError`` when a Firehose request carries an invalid setting.
    """
    planned = planned or Planned()
    for batch in batches:
        effective = same_account(connection, batch.settings)
        keyed = _with_batch_key(batch)
        mapped = plan_batch(keyed, effective.mapping, now_ms)
        planned.events += len(batch.events)
        _count_notices(mapped, planned)
        planned.jobs.extend(_event_jobs(keyed, mapped, connection.name))
        planned.jobs.extend(_consent_jobs(keyed, mapped, connection.name))
    return planned


def same_account(connection: Connection, settings: dict[str, str] | None) -> Connection:
    """``connection`` with a Firehose request's settings applied; InputError for another account.

    Delivery uses the connection's keys: a request for another Klaviyo account must not be sent
    with them. Configure a connection (and Firehose token) for that account.
    """
    effective = connection_for_request(connection, settings)
    if effective.public_key != connection.public_key:
        raise InputError(
            join_pointer(*SETTINGS_POINTER, "publicApiKey"),
            f"differs from connection {connection.name!r}'s public_api_key; configure a connection for that account",
        )
    return effective


def planned_size(batches: list[UserBatch]) -> int:
    """About how many bytes the jobs of ``batches`` will hold, before they are built.

    Each event's job stores the batch's user part (identities, attributes, consent) with that
    one event, so the user part counts once per event. Two encodings per batch (its user part,
    and the whole batch for the events' share), not one per event.
    """
    total = 0
    for batch in batches:
        shared = len(_encode_payload(msgspec.structs.replace(batch, events=())))
        events = len(_encode_payload(batch)) - shared if batch.events else 0
        total += shared * max(1, len(batch.events)) + events + _HEADER * len(batch.events)
    return total


def decode_payload(payload: bytes) -> UserBatch:
    """The stored batch of one job (its user part with its one event, or none for a consent job)."""
    parts = payload_parts(payload)
    if parts is None:  # stored by a release before the user part was framed
        return decode_user(payload)
    user, event = decode_user(parts[0]), decode_event(parts[1])
    return msgspec.structs.replace(user, events=() if event is None else (event,))


def payload_parts(payload: bytes) -> tuple[bytes, bytes] | None:
    """A framed payload's user part and event part (empty for none); None for an older payload.

    Raises ``msgspec.DecodeError`` for a frame cut short.
    """
    if payload[:1] != _FRAMED:
        return None
    size = int.from_bytes(payload[1:_HEADER], "big")
    if len(payload) < _HEADER + size:
        raise msgspec.DecodeError("stored payload is cut short")
    return payload[_HEADER : _HEADER + size], payload[_HEADER + size :]


def decode_user(part: bytes) -> UserBatch:
    """A stored user part (a batch; msgpack, or JSON for integers beyond 64 bits)."""
    if part[:1] == b"{":  # see _encode_payload; a msgpack map never starts with this byte
        return _json_decoder.decode(part)
    return _decoder.decode(part)


def decode_event(part: bytes) -> Event | None:
    """A stored event part; None when empty (a consent job)."""
    if not part:
        return None
    if part[:1] == b"{":
        return _json_event_decoder.decode(part)
    return _event_decoder.decode(part)


def _framed(user: bytes, event: bytes = b"") -> bytes:
    """One job's payload: the batch's user part, encoded once per batch, then the job's event."""
    return _FRAMED + len(user).to_bytes(_HEADER - 1, "big") + user + event


def _encode_payload(batch: UserBatch) -> bytes:
    """msgpack, or JSON for a batch holding integers msgpack cannot (attributes beyond 64 bits)."""
    try:
        return _encoder.encode(batch)
    except OverflowError:
        return _json.encode(batch)


def _encode_event(event: Event) -> bytes:
    try:
        return _encoder.encode(event)
    except OverflowError:
        return _json.encode(event)


def _with_batch_key(batch: UserBatch) -> UserBatch:
    """Pin the batch's identity before splitting it: fallback unique ids hash it."""
    if batch.batch_key:
        return batch
    return msgspec.structs.replace(batch, batch_key=hashlib.sha256(_json.encode(batch)).hexdigest())


def _count_notices(mapped: MappedBatch, planned: Planned) -> None:
    for notice in mapped.notices:
        (planned.dropped if notice.kind == "dropped" else planned.warnings)[notice.reason] += 1


def _event_jobs(batch: UserBatch, mapped: MappedBatch, connection: str) -> list[NewJob]:
    """One job per mParticle event that will be sent (``plan_batch``'s ``planned``)."""
    if not mapped.planned or mapped.profile is None:
        return []
    who = profile_key(mapped.profile.get("email"), mapped.profile.get("phone_number"))
    events = {event.index: event for event in batch.events}
    user = _encode_payload(msgspec.structs.replace(batch, events=()))
    jobs = []
    for planned in mapped.planned:
        event = events[planned.index]
        key = event_job_key(event.timestamp_ms, planned.unique_id, who, planned.metric)
        payload = _framed(user, _encode_event(event))
        jobs.append(NewJob(connection=connection, key=key, profile_key=who, kind=EVENT, payload=payload))
    return jobs


def event_job_key(timestamp_ms: float | None, unique_id: str, profile_key: str, metric: str) -> str:
    """An event job's dedup key: the event's time, then Klaviyo's own dedup identity.

    Klaviyo dedups by (profile, metric, unique_id); keyed on the unique id alone, one user's
    "Order Placed" and "Order Shipped" sharing an ``$event_id`` (or two users' events sharing
    one) would be queued once and one of them lost. The time comes first so that the store's
    dedup index grows at its end like a log: random keys (mParticle's ids are UUIDs) would
    dirty a random index page per event once the index is large.
    """
    stamp = 0 if timestamp_ms is None else max(0, int(timestamp_ms))
    return _KEY_SEPARATOR.join((f"{stamp:015d}", unique_id, profile_key, metric))


def unique_id_of(job_key: str) -> str:
    """The Klaviyo ``unique_id`` part of an event job's key."""
    return job_key.split(_KEY_SEPARATOR, 2)[1]


def _consent_jobs(batch: UserBatch, mapped: MappedBatch, connection: str) -> list[NewJob]:
    """One job per granted, and per revoked, (profile, channels): subscribing has side effects.

    mParticle repeats the user's consent state in every batch: the key holds the consent's time,
    so the same state is one job however often it comes, and each change is a job of its own.
    """
    changes = [(SUBSCRIPTION, s) for s in mapped.subscriptions] + [(UNSUBSCRIPTION, u) for u in mapped.unsubscriptions]
    if not changes:
        return []
    consents_only = _framed(_encode_payload(msgspec.structs.replace(batch, events=())))
    return [
        NewJob(
            connection=connection,
            key=_consent_key(kind, change),
            profile_key=profile_key(change.email, change.phone_number),
            kind=kind,
            payload=consents_only,
        )
        for kind, change in changes
    ]


def _consent_key(kind: str, change: Subscription | Unsubscription) -> str:
    who = profile_key(change.email, change.phone_number)
    prefix = "consent" if kind == SUBSCRIPTION else "unconsent"
    key = f"{prefix}:{who}:{'+'.join(sorted(change.channels))}"
    return key if change.timestamp_ms is None else f"{key}@{int(change.timestamp_ms)}"


def profile_key(email: str | None, phone: str | None) -> str:
    """What orders a profile's jobs: its email, else its phone."""
    return f"email:{email.lower()}" if email else f"phone:{phone}" if phone else ""
