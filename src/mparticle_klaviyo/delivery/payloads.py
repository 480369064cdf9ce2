"""Mapped events and subscriptions -> Klaviyo JSON:API requests, in client or server mode.

Client mode (public key): one ``POST /client/events`` per event. Server mode (private key):
``POST /api/event-bulk-create-jobs`` carrying up to 1000 events grouped per profile, as the
bulk API requires; ``BulkEventBuilder`` packs them within Klaviyo's limits (``pending.py``
packs what waits at send time). Consents: ``/client/subscriptions``, or bulk subscribe and
unsubscribe jobs; erasures: ``data-privacy-deletion-jobs``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from mparticle_klaviyo.klaviyo.limits import MAX_BODY_BYTES, MAX_BULK_EVENTS
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.mapping.result import MappedEvent, Subscription, Unsubscription

CLIENT_EVENTS = "/client/events"
CLIENT_SUBSCRIPTIONS = "/client/subscriptions"
BULK_EVENTS = "/api/event-bulk-create-jobs"
BULK_SUBSCRIPTIONS = "/api/profile-subscription-bulk-create-jobs"
BULK_UNSUBSCRIPTIONS = "/api/profile-subscription-bulk-delete-jobs"
DATA_PRIVACY_DELETIONS = "/api/data-privacy-deletion-jobs"
CUSTOM_SOURCE = "mParticle"

# Room kept below the 5 MB body limit for the JSON:API envelope around events and profiles.
_ENVELOPE_BYTES = 4096
_PROFILE_VIEWS = 4096  # profiles whose JSON a builder keeps (a bulk job holds at most 1000)
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
    if server_mode:
        return bulk_subscription_request([subscription], list_id)
    profile = _subscription_profile(subscription)
    if subscription.external_id and not server_mode:
        # /client/subscriptions takes it; Klaviyo's bulk subscription jobs do not.
        profile["attributes"]["external_id"] = subscription.external_id
    attributes = {"custom_source": CUSTOM_SOURCE, "profile": {"data": profile}}
    data = {"type": "subscription", "attributes": attributes, **_list_relationship(list_id)}
    return KlaviyoRequest(path=CLIENT_SUBSCRIPTIONS, auth="public", kind="subscription", body={"data": data})


def bulk_subscription_request(subscriptions: Iterable[Subscription], list_id: str | None) -> KlaviyoRequest:
    """One ``profile-subscription-bulk-create-jobs`` request subscribing every profile given."""
    profiles = [_subscription_profile(s) for s in subscriptions]
    attributes = {"custom_source": CUSTOM_SOURCE, "profiles": {"data": profiles}}
    data = {"type": "profile-subscription-bulk-create-job", "attributes": attributes, **_list_relationship(list_id)}
    return KlaviyoRequest(path=BULK_SUBSCRIPTIONS, auth="private", kind="subscription_bulk", body={"data": data})


def bulk_unsubscription_request(unsubscriptions: Iterable[Unsubscription], list_id: str | None) -> KlaviyoRequest:
    """One ``profile-subscription-bulk-delete-jobs`` request unsubscribing every profile given."""
    profiles = [_unsubscription_profile(u) for u in unsubscriptions]
    data = {
        "type": "profile-subscription-bulk-delete-job",
        "attributes": {"profiles": {"data": profiles}},
        **_list_relationship(list_id),
    }
    return KlaviyoRequest(path=BULK_UNSUBSCRIPTIONS, auth="private", kind="unsubscription_bulk", body={"data": data})


def deletion_requests(email: str | None, phone_number: str | None) -> list[KlaviyoRequest]:
    """``data-privacy-deletion-jobs`` requests deleting every profile with this email, and this phone.

    Klaviyo takes exactly one identifier per job; the email and the phone may name two profiles.
    """
    identifiers = [("email", email), ("phone_number", phone_number)]
    return [
        KlaviyoRequest(
            path=DATA_PRIVACY_DELETIONS,
            auth="private",
            kind="deletion",
            body={
                "data": {
                    "type": "data-privacy-deletion-job",
                    "attributes": {"profile": {"data": {"type": "profile", "attributes": {field: value}}}},
                }
            },
        )
        for field, value in identifiers
        if value
    ]


def _list_relationship(list_id: str | None) -> dict[str, Any]:
    return {"relationships": {"list": {"data": {"type": "list", "id": list_id}}}} if list_id else {}


def _subscription_profile(subscription: Subscription) -> dict[str, Any]:
    return _consent_profile(subscription, "SUBSCRIBED")


def _unsubscription_profile(unsubscription: Unsubscription) -> dict[str, Any]:
    return _consent_profile(unsubscription, "UNSUBSCRIBED")


def _consent_profile(change: Subscription | Unsubscription, consent: str) -> dict[str, Any]:
    """A bulk job's profile entry: its identifiers and the marketing consent for each channel."""
    attributes: dict[str, Any] = {}
    if change.email:
        attributes["email"] = change.email
    if change.phone_number:
        attributes["phone_number"] = change.phone_number
    attributes["subscriptions"] = {channel: {"marketing": {"consent": consent}} for channel in change.channels}
    return {"type": "profile", "attributes": attributes}


def _profile(profile: dict[str, Any]) -> dict[str, Any]:
    return {"data": {"type": "profile", "attributes": profile}}


# Klaviyo finds a bulk entry's profile by its identifiers, email first (the emulator's order
# too); entries are keyed by the first one present, so one person is one entry.
_IDENTIFIERS = ("email", "phone_number", "external_id")

_Identity = tuple[str, str]
_Measure = tuple[_Identity, bytes, int]


def _profile_identity(profile: dict[str, Any], profile_json: bytes) -> _Identity:
    """Who a profile is: its first identifier present (email, phone, external id)."""
    for kind in _IDENTIFIERS:
        value = profile.get(kind)
        if value:
            return kind, str(value)
    # No identifier (never mapped; Klaviyo would refuse it): only identical profiles share.
    return "", profile_json.decode()


def merge_profiles(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` updated by ``new``, latest wins; dict values (``properties``, ``location``) per key.

    What Klaviyo's profile ends up as when the two are sent one after the other.
    """
    merged = dict(old)
    for name, value in new.items():
        before = merged.get(name)
        merged[name] = {**before, **value} if isinstance(before, dict) and isinstance(value, dict) else value
    return merged


class _Entry:
    """One profile's entry in a bulk job: the profile (merged over its events) and the events."""

    __slots__ = ("events", "last_json", "profile")

    def __init__(self, profile: dict[str, Any], profile_json: bytes) -> None:
        self.profile = profile
        self.last_json = profile_json
        self.events: list[dict[str, Any]] = []

    def update(self, profile: dict[str, Any], profile_json: bytes) -> None:
        """Take a later event's differing view of the profile: merged, latest wins."""
        self.profile = merge_profiles(self.profile, profile)
        self.last_json = profile_json


class BulkEventBuilder:
    """Packs events into bulk-create jobs: <= 1000 events, <= 5 MB, one entry per profile.

    Klaviyo fails a whole job when one (profile, metric, unique_id) repeats inside it. A repeat
    of an event already in the job is dropped (counted in ``duplicates``): Klaviyo would record
    it once anyway, and its profile attributes still update the entry (latest wins). Any other
    event reusing a ``unique_id`` of the job (another metric, or a profile known by another
    identifier, which Klaviyo may resolve to the same person) waits for the next job, so no
    ``unique_id`` is ever twice in one job.
    """

    def __init__(self, max_events: int = MAX_BULK_EVENTS, max_bytes: int = MAX_BODY_BYTES) -> None:
        self._max_events = max_events
        self._max_bytes = max_bytes - _ENVELOPE_BYTES
        self.duplicates = 0
        # id(profile) -> (profile, identity, JSON), kept across jobs (see _profile_view).
        self._profiles: dict[int, tuple[dict[str, Any], _Identity, bytes]] = {}
        self._reset()

    def _reset(self) -> None:
        self._entries: dict[_Identity, _Entry] = {}
        self._keys: list[str] = []
        # Each unique_id of the job -> who its event is for and the event (for its metric).
        self._uids: dict[str, tuple[_Identity, MappedEvent]] = {}
        # Profile JSONs already charged: a merged profile is never bigger than their sum.
        self._paid: set[bytes] = set()
        self._bytes = 0
        # fits() then add() of the same events measured each event twice (two JSON encodes, the
        # bulk of packing 1,000 events); the last fits() call's measures are kept for add().
        self._measured: dict[int, tuple[MappedEvent, _Measure]] = {}

    def _measure(self, event: MappedEvent) -> _Measure:
        """The event's profile identity, its profile as JSON, and the bytes the event adds."""
        # Keyed by id(): the entry holds the event itself, so no other object can take its id.
        known = self._measured.get(id(event))
        if known is not None:
            return known[1]
        who, profile_json = self._profile_view(event.profile)
        return who, profile_json, len(_encoder.encode(event.attributes)) + 64

    def _profile_view(self, profile: dict[str, Any]) -> tuple[_Identity, bytes]:
        """Who the profile is and its JSON, once per profile object: a batch's events share one,
        and encoding it for each of them was the largest part of packing."""
        seen = self._profiles.get(id(profile))
        if seen is not None and seen[0] is profile:  # the entry holds the profile: its id is not reused
            return seen[1], seen[2]
        if len(self._profiles) >= _PROFILE_VIEWS:
            self._profiles.clear()
        profile_json = _encoder.encode(profile)
        who = _profile_identity(profile, profile_json)
        self._profiles[id(profile)] = (profile, who, profile_json)
        return who, profile_json

    def add(self, event: MappedEvent) -> Iterator[KlaviyoRequest]:
        """Add one event; yields the pending job first when the event cannot join it."""
        if not self._place(event):
            yield from self.flush()
            self._place(event)

    def add_all(self, events: list[MappedEvent]) -> bool:
        """Add all of ``events`` if they fit the pending job together; else add none (False)."""
        if len(events) == 1:
            return self._place(events[0])  # one measure, no trial run: most jobs hold one event
        if not self.fits(events):
            return False
        for event in events:
            self._place(event)
        return True

    def _place(self, event: MappedEvent) -> bool:
        """Add one event to the pending job if it can join it without a flush; whether it did.

        An empty job takes any event (mapping drops an event too large for a job of its own).
        """
        who, profile_json, size = self._measure(event)
        holder = self._uids.get(event.unique_id)
        duplicate = holder is not None and _same_event(holder, who, event)
        cost = self._profile_cost(profile_json) + (0 if duplicate else size)
        blocked = not duplicate and (holder is not None or len(self._keys) >= self._max_events)
        if self._keys and (blocked or self._bytes + cost > self._max_bytes):
            return False
        self._bytes += cost
        self._paid.add(profile_json)
        entry = self._entries.get(who)
        if entry is None:
            entry = self._entries[who] = _Entry(event.profile, profile_json)
        elif profile_json != entry.last_json:
            entry.update(event.profile, profile_json)
        if duplicate:
            self.duplicates += 1
            return True
        entry.events.append({"type": "event", "attributes": event.attributes})
        self._uids[event.unique_id] = (who, event)
        self._keys.append(event.unique_id)
        return True

    def _profile_cost(self, profile_json: bytes) -> int:
        """Bytes a profile adds to the job: nothing if this exact profile is already in it."""
        return 0 if profile_json in self._paid else len(profile_json) + 128

    def fits(self, events: list[MappedEvent]) -> bool:
        """Whether all of ``events`` can join the pending job without a flush."""
        count, size = len(self._keys), self._bytes
        uids: dict[str, tuple[_Identity, MappedEvent]] = {}
        paid: set[bytes] = set()
        self._measured = {}
        for event in events:
            who, profile_json, event_size = measure = self._measure(event)
            self._measured[id(event)] = (event, measure)
            if profile_json not in paid:
                size += self._profile_cost(profile_json)
                paid.add(profile_json)
            holder = self._uids.get(event.unique_id) or uids.get(event.unique_id)
            if holder is not None:
                if _same_event(holder, who, event):
                    continue  # add() drops it: no event, no count
                return False
            uids[event.unique_id] = (who, event)
            count += 1
            size += event_size
        return count <= self._max_events and size <= self._max_bytes

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
                "attributes": {"profile": _profile(entry.profile), "events": {"data": entry.events}},
            }
            for entry in self._entries.values()
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


def _same_event(holder: tuple[_Identity, MappedEvent], who: _Identity, event: MappedEvent) -> bool:
    """Whether ``event`` repeats the job's event with its unique_id: same profile and metric."""
    return holder[0] == who and _metric(holder[1]) == _metric(event)


def _metric(event: MappedEvent) -> str:
    name: str = event.attributes["metric"]["data"]["attributes"]["name"]
    return name
