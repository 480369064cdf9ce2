"""Mapped events and subscriptions -> Klaviyo JSON:API requests, in client or server mode.

Client mode (public key): one ``POST /client/events`` per event. Server mode (private key):
``POST /api/event-bulk-create-jobs`` carrying up to 1000 events grouped per profile, as the
bulk API requires; ``BulkEventBuilder`` packs them across batches within Klaviyo's limits.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from mparticle_klaviyo.klaviyo.limits import MAX_BODY_BYTES, MAX_BULK_EVENTS
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.mapping.result import MappedEvent, Subscription

CLIENT_EVENTS = "/client/events"
CLIENT_SUBSCRIPTIONS = "/client/subscriptions"
BULK_EVENTS = "/api/event-bulk-create-jobs"
BULK_SUBSCRIPTIONS = "/api/profile-subscription-bulk-create-jobs"
CUSTOM_SOURCE = "mParticle"

# Room kept below the 5 MB body limit for the JSON:API envelope around events and profiles.
_ENVELOPE_BYTES = 4096
_encoder = msgspec.json.Encoder()


def client_event_request(event: MappedEvent) -> KlaviyoRequest:
    """``POST /client/events`` for one event."""
    attributes = {**event.attributes, "profile": _profile(event.profile)}
    return KlaviyoRequest(
        path=CLIENT_EVENTS,
        auth="public",
        kind="event",
        body={"data": {"type": "event", "attributes": attributes}},
        event_keys=(event.unique_id,),
    )


def subscription_request(subscription: Subscription, list_id: str | None, server_mode: bool) -> KlaviyoRequest:
    """Subscribe one profile: ``/client/subscriptions``, or the bulk job in server mode."""
    profile = _subscription_profile(subscription)
    relationships = {"relationships": {"list": {"data": {"type": "list", "id": list_id}}}} if list_id else {}
    if server_mode:
        attributes = {"custom_source": CUSTOM_SOURCE, "profiles": {"data": [profile]}}
        data = {"type": "profile-subscription-bulk-create-job", "attributes": attributes, **relationships}
        return KlaviyoRequest(path=BULK_SUBSCRIPTIONS, auth="private", kind="subscription_bulk", body={"data": data})
    attributes = {"custom_source": CUSTOM_SOURCE, "profile": {"data": profile}}
    data = {"type": "subscription", "attributes": attributes, **relationships}
    return KlaviyoRequest(path=CLIENT_SUBSCRIPTIONS, auth="public", kind="subscription", body={"data": data})


def _subscription_profile(subscription: Subscription) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if subscription.email:
        attributes["email"] = subscription.email
    if subscription.phone_number:
        attributes["phone_number"] = subscription.phone_number
    attributes["subscriptions"] = {
        channel: {"marketing": {"consent": "SUBSCRIBED"}} for channel in subscription.channels
    }
    return {"type": "profile", "attributes": attributes}


def _profile(profile: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"type": "profile", "attributes": profile}}


class BulkEventBuilder:
    """Packs events into bulk-create jobs: <= 1000 events, <= 5 MB, one entry per profile.

    Klaviyo fails a whole job when one (profile, metric, unique_id) repeats inside it, so a
    repeat is not added (``add`` returns False): it is the same event, already in the job.
    """

    def __init__(self, max_events: int = MAX_BULK_EVENTS, max_bytes: int = MAX_BODY_BYTES) -> None:
        self._max_events = max_events
        self._max_bytes = max_bytes - _ENVELOPE_BYTES
        self._reset()

    def _reset(self) -> None:
        self._entries: dict[bytes, tuple[dict[str, Any], list[dict[str, Any]]]] = {}
        self._keys: list[str] = []
        self._seen: set[tuple[bytes, str, str]] = set()
        self._bytes = 0
        # fits() then add() of the same events measured each event twice (two JSON encodes, the
        # bulk of packing 1,000 events); the last fits() call's measures are kept for add().
        self._measured: dict[int, tuple[MappedEvent, bytes, int]] = {}

    def _measure(self, event: MappedEvent) -> tuple[bytes, int]:
        """The event's profile key (its profile as JSON) and the bytes it adds to a job."""
        # Keyed by id(): the entry holds the event itself, so no other object can take its id.
        known = self._measured.get(id(event))
        if known is not None:
            return known[1], known[2]
        return _encoder.encode(event.profile), len(_encoder.encode(event.attributes)) + 64

    def add(self, event: MappedEvent) -> Iterator[KlaviyoRequest]:
        """Add one event; yields the pending job first when the event would not fit in it."""
        profile_key, size = self._measure(event)
        metric = event.attributes["metric"]["data"]["attributes"]["name"]
        dedup_key = (profile_key, metric, event.unique_id)
        if dedup_key in self._seen:
            return
        full = len(self._keys) >= self._max_events
        if self._keys and (full or self._bytes + size + self._profile_cost(profile_key) > self._max_bytes):
            yield from self.flush()
        entry = self._entries.get(profile_key)
        if entry is None:
            self._bytes += self._profile_cost(profile_key)
            entry = self._entries[profile_key] = (event.profile, [])
        entry[1].append({"type": "event", "attributes": event.attributes})
        self._seen.add(dedup_key)
        self._keys.append(event.unique_id)
        self._bytes += size

    def _profile_cost(self, profile_key: bytes) -> int:
        """Bytes a profile adds to the job: nothing if it already has an entry."""
        return 0 if profile_key in self._entries else len(profile_key) + 128

    def fits(self, events: list[MappedEvent]) -> bool:
        """Whether all of ``events`` can join the pending job without a flush."""
        if len(self._keys) + len(events) > self._max_events:
            return False
        size = 0
        new_profiles: set[bytes] = set()
        self._measured = {}
        for event in events:
            profile_key, event_size = self._measure(event)
            self._measured[id(event)] = (event, profile_key, event_size)
            if profile_key not in new_profiles:
                size += self._profile_cost(profile_key)
                new_profiles.add(profile_key)
            size += event_size
        return self._bytes + size <= self._max_bytes

    @property
    def empty(self) -> bool:
        """Whether no event is pending."""
        return not self._keys

    def flush(self) -> Iterator[KlaviyoRequest]:
        """Yield the pending job, if any, and start a new one."""
        if not self._keys:
            return
        entries = [
            {
                "type": "event-bulk-create",
                "attributes": {"profile": _profile(profile), "events": {"data": events}},
            }
            for profile, events in self._entries.values()
        ]
        body = {
            "data": {
                "type": "event-bulk-create-job",
                "attributes": {"events-bulk-create": {"data": entries}},
            }
        }
        request = KlaviyoRequest(
            path=BULK_EVENTS,
            auth="private",
            kind="event_bulk",
            body=body,
            event_keys=tuple(self._keys),
        )
        self._reset()
        yield request


def event_requests(events: Iterable[MappedEvent], server_mode: bool) -> Iterator[KlaviyoRequest]:
    """All requests for a sequence of events (one job stream in server mode)."""
    if not server_mode:
        for event in events:
            yield client_event_request(event)
        return
    builder = BulkEventBuilder()
    for event in events:
        yield from builder.add(event)
    yield from builder.flush()
