"""Claimed jobs -> send units: the requests to make and the jobs each request settles.

Client mode: one unit per job, holding that job's requests in order (a purchase makes an order
plus one request per product). Server mode packs many jobs into one bulk request when a send is
admitted (``pending.py``); only a job too large to share one travels as a unit of its own here.
"""

from __future__ import annotations

import re
import time

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.delivery.payloads import (
    BulkEventBuilder,
    bulk_unsubscription_request,
    client_event_request,
    deletion_requests,
    subscription_request,
)
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.erasure import ERASURE, decode_erasure_job
from mparticle_klaviyo.jobs.plan import (
    SUBSCRIPTION,
    UNSUBSCRIPTION,
    decode_event,
    decode_payload,
    decode_user,
    payload_parts,
    unique_id_of,
)
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.mapping.batch import PreparedUser, map_events, prepare_user
from mparticle_klaviyo.mapping.result import MappedBatch, MappedEvent, Notice
from mparticle_klaviyo.mapping.settings import MappingSettings
from mparticle_klaviyo.mparticle.model import UserBatch
from mparticle_klaviyo.overrides import connection_for_request
from mparticle_klaviyo.store.base import Job


class Unit(msgspec.Struct, frozen=True):
    """Requests sent one after another; their joint answer settles ``jobs``."""

    requests: tuple[KlaviyoRequest, ...]
    jobs: tuple[Job, ...]


class Unmappable(msgspec.Struct, frozen=True):
    """A job that maps to nothing today (dropped, or unreadable): it goes to the dead letters."""

    job: Job
    reason: str
    detail: str


class MappedJob(msgspec.Struct, frozen=True, gc=False):
    """A job's Klaviyo events and other requests, mapped with today's code."""

    # gc=False (as MappedEvent): nothing it holds refers back to it, so it is never in a
    # cycle, and the collector need not walk the thousands waiting to be packed.

    job: Job
    events: list[MappedEvent]
    requests: list[KlaviyoRequest]


class PreparedUsers:
    """Users prepared for mapping (``prepare_user``), by the stored bytes of their user part.

    A batch's jobs share its user part byte for byte, so its profile (phone parsing, attribute
    placement, consent) is built once instead of once per job. Bounded: the oldest go first.
    """

    def __init__(self, connection: Connection, size: int = 4096) -> None:
        self._connection = connection
        self._size = size
        self._users: dict[bytes, tuple[Connection, PreparedUser]] = {}

    def get(self, part: bytes) -> tuple[Connection, PreparedUser]:
        """The connection (with the batch's Firehose settings) and the prepared user; may raise
        ``msgspec.DecodeError`` or ``InputError`` for a part that cannot be read or applied."""
        found = self._users.get(part)
        if found is None:
            found = _prepared(decode_user(part), self._connection)
            if len(self._users) >= self._size:
                del self._users[next(iter(self._users))]
            self._users[part] = found
        return found

    def __len__(self) -> int:
        return len(self._users)


def _prepared(batch: UserBatch, connection: Connection) -> tuple[Connection, PreparedUser]:
    effective = connection_for_request(connection, batch.settings)
    return effective, prepare_user(batch, effective.mapping)


def map_job(
    job: Job, connection: Connection, now_ms: float, users: PreparedUsers | None = None
) -> MappedJob | Unmappable:
    """Map one stored job; anything that stops it from being sent is an ``Unmappable``.

    ``users`` lets the jobs of one batch share their user's mapping (see ``PreparedUsers``).
    """
    if job.kind == ERASURE:
        return _erasure(job)
    try:
        effective, result = _map_payload(job.payload, connection, now_ms, users)
    except (msgspec.DecodeError, InputError) as exc:
        return Unmappable(job, "unmappable", str(exc))
    mapping = effective.mapping
    if job.kind in (SUBSCRIPTION, UNSUBSCRIPTION):
        requests = _consent_requests(job.kind, result, mapping)
        if not requests:
            return _dropped(job, result.notices)
        return MappedJob(job, [], requests)
    if not result.events:
        return _dropped(job, result.notices)
    if mapping.server_mode:
        return MappedJob(job, result.events, [])
    return MappedJob(job, result.events, [client_event_request(e) for e in result.events])


def _map_payload(
    payload: bytes, connection: Connection, now_ms: float, users: PreparedUsers | None
) -> tuple[Connection, MappedBatch]:
    parts = payload_parts(payload)
    if parts is None or users is None:
        batch = decode_payload(payload)
        effective, user = _prepared(batch, connection)
        return effective, map_events(user, batch.events, now_ms)
    effective, user = users.get(parts[0])
    event = decode_event(parts[1])
    return effective, map_events(user, () if event is None else (event,), now_ms)


def _erasure(job: Job) -> MappedJob | Unmappable:
    try:
        erasure = decode_erasure_job(job.payload)
    except msgspec.DecodeError as exc:
        return Unmappable(job, "unmappable", str(exc))
    return MappedJob(job, [], deletion_requests(erasure.email, erasure.phone_number))


def _consent_requests(kind: str, result: MappedBatch, mapping: MappingSettings) -> list[KlaviyoRequest]:
    """A consent job's request: subscribe what the batch grants, or unsubscribe what it revokes."""
    if kind == SUBSCRIPTION:
        return [subscription_request(s, mapping.list_id, mapping.server_mode) for s in result.subscriptions]
    return [bulk_unsubscription_request([u], mapping.list_id) for u in result.unsubscriptions]


def _dropped(job: Job, notices: list[Notice]) -> Unmappable:
    reasons = sorted({n.reason for n in notices if n.kind == "dropped"})
    return Unmappable(job, "dropped:" + (reasons[0] if reasons else "nothing_to_send"), ", ".join(reasons))


def build_units(mapped: list[MappedJob], server_mode: bool) -> list[Unit]:
    """Units sent as soon as they are claimed: client-mode jobs, and server-mode jobs too large
    to share a bulk request (the others wait in ``pending.py`` to be packed at send time)."""
    if not server_mode:
        return [Unit(tuple(m.requests), (m.job,)) for m in mapped if m.requests]
    # Requests that share no bulk job (erasures), or events too many for one bulk job.
    return [Unit(tuple(m.requests or _alone(m.events)), (m.job,)) for m in mapped if m.requests or m.events]


def _alone(events: list[MappedEvent]) -> list[KlaviyoRequest]:
    own = BulkEventBuilder()
    requests = [request for event in events for request in own.add(event)]
    return requests + list(own.flush())


def now_ms() -> float:
    """Wall-clock milliseconds, for mapping's time window."""
    return time.time() * 1000


_PROFILES_POINTER = re.compile(r"^/data/attributes/profiles/data/(\d+)")
_BULK_POINTER = re.compile(r"^/data/attributes/events-bulk-create/data/(\d+)(?:/attributes/events/data/(\d+))?")


def culprits(unit: Unit, pointer: str | None) -> list[Job]:
    """The jobs a bulk error pointer names; all of the unit's jobs when it names none."""
    if len(unit.jobs) == 1:
        return list(unit.jobs)
    profile = _PROFILES_POINTER.match(pointer or "")
    if profile is not None:
        return _profile_culprits(unit, int(profile.group(1)))
    match = _BULK_POINTER.match(pointer or "")
    if match is None:
        return list(unit.jobs)
    entries = unit.requests[0].body["data"]["attributes"]["events-bulk-create"]["data"]
    entry_index = int(match.group(1))
    if entry_index >= len(entries):
        return list(unit.jobs)
    events = entries[entry_index]["attributes"]["events"]["data"]
    if match.group(2) is not None and int(match.group(2)) < len(events):
        events = [events[int(match.group(2))]]
    bad_ids = {e["attributes"]["unique_id"] for e in events}
    # A job's key is its base unique id; commerce events add ":<n>" to it.
    named = [job for job in unit.jobs if _names_job(unique_id_of(job.key), bad_ids)]
    return named or list(unit.jobs)


def _names_job(unique_id: str, bad_ids: set[str]) -> bool:
    """Whether a rejected event is this job's own (or one of its ``<id>:<n>`` commerce events)."""
    return unique_id in bad_ids or any(i.startswith(unique_id + ":") for i in bad_ids)


def _profile_culprits(unit: Unit, index: int) -> list[Job]:
    """The job whose profile sits at ``index`` of a packed bulk subscription job."""
    profiles = unit.requests[0].body["data"]["attributes"]["profiles"]["data"]
    if index >= len(profiles) or len(profiles) != len(unit.jobs):
        return list(unit.jobs)
    return [unit.jobs[index]]
