"""Claimed jobs -> send units: the requests to make and the jobs each request settles.

Client mode: one unit per job, holding that job's requests in order (a purchase makes an order
plus one request per product). Server mode: events of many jobs packed into bulk jobs; a job's
events always travel in one request, so one answer settles the job.
"""

from __future__ import annotations

import re
import time

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.delivery.payloads import BulkEventBuilder, client_event_request, subscription_request
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.klaviyo.limits import MAX_BULK_PROFILES
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.mapping.batch import map_batch
from mparticle_klaviyo.mapping.result import MappedEvent, Notice
from mparticle_klaviyo.overrides import connection_for_request
from mparticle_klaviyo.service.jobs import SUBSCRIPTION, decode_payload, unique_id_of
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


class Mapped(msgspec.Struct, frozen=True):
    """A job's Klaviyo events and other requests, mapped with today's code."""

    job: Job
    events: list[MappedEvent]
    requests: list[KlaviyoRequest]


def map_job(job: Job, connection: Connection, now_ms: float) -> Mapped | Unmappable:
    """Map one stored job; anything that stops it from being sent is an ``Unmappable``."""
    try:
        batch = decode_payload(job.payload)
        effective = connection_for_request(connection, batch.settings)
    except (msgspec.DecodeError, InputError) as exc:
        return Unmappable(job, "unmappable", str(exc))
    result = map_batch(batch, effective.mapping, now_ms)
    mapping = effective.mapping
    if job.kind == SUBSCRIPTION:
        requests = [subscription_request(s, mapping.list_id, mapping.server_mode) for s in result.subscriptions]
        if not requests:
            return _dropped(job, result.notices)
        return Mapped(job, [], requests)
    if not result.events:
        return _dropped(job, result.notices)
    if mapping.server_mode:
        return Mapped(job, result.events, [])
    return Mapped(job, result.events, [client_event_request(e) for e in result.events])


def _dropped(job: Job, notices: list[Notice]) -> Unmappable:
    reasons = sorted({n.reason for n in notices if n.kind == "dropped"})
    return Unmappable(job, "dropped:" + (reasons[0] if reasons else "nothing_to_send"), ", ".join(reasons))


def build_units(mapped: list[Mapped], server_mode: bool) -> list[Unit]:
    """Group mapped jobs into units (see the module docstring)."""
    if not server_mode:
        return [Unit(tuple(m.requests), (m.job,)) for m in mapped if m.requests]
    subscriptions = [m for m in mapped if m.requests]
    return _subscription_units(subscriptions) + _bulk_units([m for m in mapped if m.events and not m.requests])


def _subscription_units(mapped: list[Mapped]) -> list[Unit]:
    """Server mode: many jobs' profiles in one bulk subscription job (up to 1000 profiles).

    One request per consent would let a backlog of consents fill the in-flight window while
    they wait for their (slower) endpoint, starving the events behind them.
    """
    units: list[Unit] = []
    for chunk in _chunks(mapped, MAX_BULK_PROFILES):
        first = chunk[0].requests[0]
        profiles = [p for m in chunk for r in m.requests for p in r.body["data"]["attributes"]["profiles"]["data"]]
        data = {
            **first.body["data"],
            "attributes": {**first.body["data"]["attributes"], "profiles": {"data": profiles}},
        }
        request = KlaviyoRequest(path=first.path, auth=first.auth, kind=first.kind, body={"data": data})
        units.append(Unit((request,), tuple(m.job for m in chunk)))
    return units


def _chunks(items: list[Mapped], size: int) -> list[list[Mapped]]:
    """``items`` in runs of at most ``size`` profiles, a job's profiles never split."""
    chunks: list[list[Mapped]] = []
    current: list[Mapped] = []
    count = 0
    for item in items:
        profiles = sum(len(r.body["data"]["attributes"]["profiles"]["data"]) for r in item.requests)
        if current and count + profiles > size:
            chunks.append(current)
            current, count = [], 0
        current.append(item)
        count += profiles
    return chunks + ([current] if current else [])


def _bulk_units(mapped: list[Mapped]) -> list[Unit]:
    """Pack jobs into bulk requests of at most 1000 events and 5 MB, never splitting a job.

    A job too big for one request on its own gets a unit of its own with several requests.
    """
    units: list[Unit] = []
    builder = BulkEventBuilder()
    jobs: list[Job] = []
    for item in mapped:
        if not builder.fits(item.events) and not builder.empty:
            units.extend(Unit((request,), tuple(jobs)) for request in builder.flush())
            jobs = []
        if not builder.fits(item.events):
            units.append(Unit(tuple(_alone(item.events)), (item.job,)))
            continue
        for event in item.events:
            for _ in builder.add(event):
                raise AssertionError("fits() promised no flush")
        jobs.append(item.job)
    units.extend(Unit((request,), tuple(jobs)) for request in builder.flush())
    return units


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
