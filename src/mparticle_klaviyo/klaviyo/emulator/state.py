"""What the emulator has seen: recorded events (deduplicated), profiles, consent, deletions, counters.

Dedup follows Klaviyo's rule for ``unique_id``: the key is (account, profile, metric name,
``unique_id``), or the event time truncated to the second when ``unique_id`` is absent. The
first event with a key is recorded; a repeat is still accepted (202) but only counted in
``duplicates_dropped``.

A profile deletion removes the profile with its events, subscriptions and unsubscriptions;
the counters (``events_recorded`` ...) count traffic and are left as they are.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .identity import Identity
from .profile_store import Profile, ProfileStore


@dataclass(slots=True)
class EventIn:
    """One validated event of a request, ready to record."""

    metric: str
    service: str | None
    unique_id: str | None
    epoch: int
    value: float | int | None
    value_currency: str | None
    properties: dict[str, Any]
    backfill: bool

    def dedup_token(self) -> str:
        """The per-profile, per-metric dedup token: ``unique_id``, else the time's second."""
        return self.unique_id if self.unique_id is not None else f"time:{self.epoch}"


def iso(epoch: float) -> str:
    """Epoch seconds as an RFC 3339 UTC string, truncated to the second."""
    return _iso(int(epoch))


@functools.lru_cache(maxsize=4096)
def _iso(second: int) -> str:
    # Cached: every event records its receive time, and a busy second repeats it thousands of times.
    return datetime.fromtimestamp(second, UTC).isoformat()


class State:
    """Recorded traffic; everything ``GET /_emulator/state`` shows."""

    def __init__(self, max_rejected: int = 10_000, max_events: int | None = None) -> None:
        self._max_rejected = max_rejected
        self._max_events = max_events
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded (configuration is kept by the emulator)."""
        self.profiles = ProfileStore()
        # Long benchmarks may cap the kept events; dedup and `events_recorded` stay exact.
        self.events: deque[dict[str, Any]] = deque(maxlen=self._max_events)
        self.events_recorded = 0
        self.subscriptions: list[dict[str, Any]] = []
        self.unsubscriptions: list[dict[str, Any]] = []
        self.deletions: list[dict[str, Any]] = []
        self._seen: set[tuple[str, str, str, str]] = set()
        self.duplicates_dropped = 0
        self.rejected: deque[dict[str, Any]] = deque(maxlen=self._max_rejected)
        self.violations: list[dict[str, Any]] = []
        self.throttled = 0
        self.requests = 0
        self.faults_injected = 0
        self.partial_failures = 0

    def record_event(self, profile: Profile, event: EventIn, endpoint: str, received: float) -> bool:
        """Record ``event`` for ``profile`` unless its dedup key was seen; True if recorded."""
        key = (profile.account, profile.id, event.metric, event.dedup_token())
        if key in self._seen:
            self.duplicates_dropped += 1
            return False
        self._seen.add(key)
        self.events_recorded += 1
        self.events.append(
            {
                "account": profile.account,
                "company": profile.account,
                "endpoint": endpoint,
                "profile_id": profile.id,
                "profile": dict(profile.ids),
                "metric": event.metric,
                "service": event.service,
                "unique_id": event.unique_id,
                "time": iso(event.epoch),
                "value": event.value,
                "value_currency": event.value_currency,
                "properties": event.properties,
                "backfill": event.backfill,
                "received_at": iso(received),
            }
        )
        return True

    def record_subscription(
        self,
        profile: Profile,
        identity: Identity,
        list_id: str | None,
        channels: list[str],
        extra: dict[str, Any],
    ) -> None:
        """Record one profile's consent: its list, channels and contact identifiers."""
        profile.subscribe(channels, list_id)
        self.subscriptions.append(_consent_record(profile.account, profile.id, identity, list_id, channels, extra))

    def record_unsubscription(
        self,
        account: str,
        profile: Profile | None,
        identity: Identity,
        list_id: str | None,
        channels: list[str],
        extra: dict[str, Any],
    ) -> None:
        """Record one profile's revoked consent; ``profile`` is None for push tokens sent alone."""
        if profile is not None:
            profile.unsubscribe(channels, list_id)
        profile_id = None if profile is None else profile.id
        self.unsubscriptions.append(_consent_record(account, profile_id, identity, list_id, channels, extra))

    def delete_profile(self, profile: Profile) -> dict[str, int]:
        """Forget ``profile`` and everything recorded for it; how many records of each kind went."""
        self.profiles.delete(profile.id)
        # Dedup keys stay: they hold the profile id, which is never given out again.
        events = _without(self.events, profile.id)
        subscriptions = _without(self.subscriptions, profile.id)
        unsubscriptions = _without(self.unsubscriptions, profile.id)
        counts = {
            "events": len(self.events) - len(events),
            "subscriptions": len(self.subscriptions) - len(subscriptions),
            "unsubscriptions": len(self.unsubscriptions) - len(unsubscriptions),
        }
        self.events = deque(events, maxlen=self._max_events)
        self.subscriptions, self.unsubscriptions = subscriptions, unsubscriptions
        return counts

    def record_deletion(self, entry: dict[str, Any]) -> None:
        """Remember a profile deletion request (whether or not it matched a profile)."""
        self.deletions.append(entry)

    def reject(self, entry: dict[str, Any]) -> None:
        """Remember an error answer (the newest ``max_rejected`` are kept)."""
        self.rejected.append(entry)

    def violate(self, reason: str, method: str, path: str, **detail: Any) -> None:
        """Remember a rule a client must never break (e.g. a private key on /client/*)."""
        self.violations.append({"reason": reason, "method": method, "path": path, **detail})

    def snapshot(self) -> dict[str, Any]:
        """The inspection document served by ``GET /_emulator/state``."""
        return {
            "events": list(self.events),
            "events_recorded": self.events_recorded,
            "profiles": self.profiles.snapshot(),
            "subscriptions": self.subscriptions,
            "unsubscriptions": self.unsubscriptions,
            "deletions": self.deletions,
            "duplicates_dropped": self.duplicates_dropped,
            "rejected": list(self.rejected),
            "throttled": self.throttled,
            "requests": self.requests,
            "violations": self.violations,
            "faults_injected": self.faults_injected,
            "partial_failures": self.partial_failures,
        }


def _consent_record(
    account: str,
    profile_id: str | None,
    identity: Identity,
    list_id: str | None,
    channels: list[str],
    extra: dict[str, Any],
) -> dict[str, Any]:
    return {
        "account": account,
        "profile_id": profile_id,
        "list_id": list_id,
        "channels": channels,
        "email": identity.ids.get("email"),
        "phone_number": identity.ids.get("phone_number"),
        **extra,
    }


def _without(records: Iterable[dict[str, Any]], profile_id: str) -> list[dict[str, Any]]:
    return [record for record in records if record["profile_id"] != profile_id]
