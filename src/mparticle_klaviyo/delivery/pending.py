"""Server-mode jobs waiting for their endpoint; a bulk request is packed only when one may go.

Klaviyo limits bulk jobs, not events (10/s and 150/min at XL, 1/s and 15/min at XS), so each
job should carry what is waiting when it is allowed to leave, up to 1000 events or profiles.
Packing at claim time instead made one request per claim, and under a trickle of events
hundreds of one-event requests queued in the rate limiter. Here mapped jobs wait in arrival
order; ``take`` packs from the front whatever fits, never splitting a job, and is called by a
sender only once its lane admitted a request (gate open, slot, token).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import msgspec

from mparticle_klaviyo.delivery.payloads import BulkEventBuilder
from mparticle_klaviyo.delivery.units import MappedJob, Unit
from mparticle_klaviyo.klaviyo.limits import MAX_BULK_EVENTS, MAX_BULK_PROFILES
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest

_encoder = msgspec.json.Encoder()


class PendingEvents:
    """Jobs whose events go out in ``event-bulk-create-jobs``; each fits one request alone."""

    def __init__(self) -> None:
        self._jobs: deque[MappedJob] = deque()
        self._events = 0

    def add(self, mapped: MappedJob) -> None:
        """Queue a mapped job behind the others."""
        self._jobs.append(mapped)
        self._events += len(mapped.events)

    def __len__(self) -> int:
        return len(self._jobs)

    def requests_wanted(self) -> int:
        """About how many requests what waits needs (how many senders are worth running)."""
        return math.ceil(self._events / MAX_BULK_EVENTS)

    def take(self) -> Unit | None:
        """One bulk request of the jobs at the front, as many as fit; None when none wait."""
        builder = BulkEventBuilder()
        taken: list[MappedJob] = []
        while self._jobs and builder.add_all(self._jobs[0].events):
            item = self._jobs.popleft()
            taken.append(item)
            self._events -= len(item.events)
        requests = list(builder.flush())
        if not requests:
            return None
        return Unit((requests[0],), tuple(item.job for item in taken))

    def drain(self) -> list[MappedJob]:
        """Everything waiting, removed (to release at shutdown)."""
        jobs, self._jobs, self._events = list(self._jobs), deque(), 0
        return jobs


class PendingSubscriptions:
    """Jobs whose profiles go out in one bulk profile job: subscribe (``-create-jobs``) or unsubscribe.

    Profiles share a request only when the rest of their request is the same (the list, the
    source): a job's subscription for another list waits for a request of its own.
    """

    def __init__(self, max_profiles: int = MAX_BULK_PROFILES) -> None:
        self._jobs: deque[tuple[bytes, MappedJob]] = deque()
        self._max_profiles = max_profiles

    def add(self, mapped: MappedJob) -> None:
        """Queue a mapped subscription job behind the others."""
        self._jobs.append((_template_key(mapped.requests[0]), mapped))

    def __len__(self) -> int:
        return len(self._jobs)

    def requests_wanted(self) -> int:
        """About how many requests what waits needs."""
        return math.ceil(sum(_profile_count(m) for _, m in self._jobs) / self._max_profiles)

    def take(self) -> Unit | None:
        """One request with the profiles of the front jobs sharing the first one's template."""
        if not self._jobs:
            return None
        key = self._jobs[0][0]
        taken: list[MappedJob] = []
        kept: deque[tuple[bytes, MappedJob]] = deque()
        count = 0
        while self._jobs:
            entry = self._jobs.popleft()
            size = _profile_count(entry[1])
            if entry[0] != key or (taken and count + size > self._max_profiles):
                kept.append(entry)
                continue
            taken.append(entry[1])
            count += size
        self._jobs = kept
        return Unit((_merged(taken),), tuple(m.job for m in taken))

    def drain(self) -> list[MappedJob]:
        """Everything waiting, removed (to release at shutdown)."""
        jobs = [m for _, m in self._jobs]
        self._jobs = deque()
        return jobs


def _profiles(request: KlaviyoRequest) -> list[Any]:
    profiles: list[Any] = request.body["data"]["attributes"]["profiles"]["data"]
    return profiles


def _profile_count(mapped: MappedJob) -> int:
    return sum(len(_profiles(r)) for r in mapped.requests)


def _template_key(request: KlaviyoRequest) -> bytes:
    """The request without its profiles: requests with the same key may be merged."""
    data = request.body["data"]
    attributes = {k: v for k, v in data["attributes"].items() if k != "profiles"}
    return request.path.encode() + _encoder.encode({**data, "attributes": attributes})


def _merged(taken: list[MappedJob]) -> KlaviyoRequest:
    """One bulk subscription request carrying every profile of ``taken``."""
    first = taken[0].requests[0]
    profiles = [p for m in taken for r in m.requests for p in _profiles(r)]
    data = first.body["data"]
    body = {"data": {**data, "attributes": {**data["attributes"], "profiles": {"data": profiles}}}}
    return KlaviyoRequest(path=first.path, auth=first.auth, kind=first.kind, body=body)
