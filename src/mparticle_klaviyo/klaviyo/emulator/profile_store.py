"""Profiles per account, found in O(1) by any identifier.

A request's profile is matched to an existing one by the first identifier that is already
known (``id``, then email, phone, external id, anonymous id, ``_kx``). Client endpoints may
add a missing identifier but never change an existing one (Klaviyo answers 202 and ignores
the change); server endpoints may change them. An identifier already owned by another
profile is never moved silently.

Consent is kept per profile as one status per ``"<channel>.<kind>"`` (e.g. ``email.marketing``),
set by the subscribe and unsubscribe calls in the order they arrive, with the lists the profile
is on. It is account-wide, not per list [assumption: Klaviyo's list-level suppressions are not
modelled].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .identity import IDENTIFIERS, Identity

_MATCH_ORDER = IDENTIFIERS[1:]

SUBSCRIBED = "SUBSCRIBED"
"""A channel's consent after a subscribe call."""
UNSUBSCRIBED = "UNSUBSCRIBED"
"""A channel's consent after an unsubscribe call."""


@dataclass(slots=True)
class Profile:
    """One stored profile."""

    id: str
    account: str
    ids: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0
    consent: dict[str, str] = field(default_factory=dict)
    lists: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The inspection form: account, id, identifiers, attributes, properties, consent, lists."""
        return {
            "account": self.account,
            "id": self.id,
            **{kind: self.ids.get(kind) for kind in _MATCH_ORDER},
            "attributes": self.attributes,
            "properties": self.properties,
            "consent": dict(self.consent),
            "lists": list(self.lists),
        }

    def subscribe(self, channels: list[str], list_id: str | None) -> None:
        """Mark ``channels`` SUBSCRIBED and join ``list_id`` (if any); the latest call wins."""
        for channel in channels:
            self.consent[channel] = SUBSCRIBED
        if list_id is not None and list_id not in self.lists:
            self.lists.append(list_id)

    def unsubscribe(self, channels: list[str], list_id: str | None) -> None:
        """Mark ``channels`` UNSUBSCRIBED and leave ``list_id`` (if any); the latest call wins."""
        for channel in channels:
            self.consent[channel] = UNSUBSCRIBED
        if list_id in self.lists:
            self.lists.remove(list_id)

    def label(self) -> str:
        """The identifier the inspection endpoint keys this profile by."""
        for kind in _MATCH_ORDER:
            if kind in self.ids:
                return self.ids[kind]
        return self.id


class ProfileStore:
    """All profiles, with an index (account, identifier kind, value) → profile id."""

    def __init__(self) -> None:
        self.profiles: dict[str, Profile] = {}
        self._index: dict[tuple[str, str, str], str] = {}
        self._next = 0

    def matches(self, account: str, identity: Identity) -> list[str]:
        """Distinct ids of the stored profiles that share an identifier with ``identity``."""
        found: list[str] = []
        wanted = identity.ids.get("id")
        stored = None if wanted is None else self.profiles.get(wanted)
        if stored is not None and stored.account == account:
            found.append(stored.id)
        for kind in _MATCH_ORDER:
            value = identity.ids.get(kind)
            owner = None if value is None else self._index.get((account, kind, value))
            if owner is not None and owner not in found:
                found.append(owner)
        return found

    def upsert(
        self,
        account: str,
        identity: Identity,
        attributes: dict[str, Any],
        properties: dict[str, Any],
        *,
        now: float,
        may_change_ids: bool,
        clear_nulls: bool = False,
    ) -> tuple[Profile, bool]:
        """Create or update the profile ``identity`` names; return it and whether it is new.

        A null attribute is ignored, or with ``clear_nulls`` (profile import) removed.
        """
        found = self.matches(account, identity)
        created = not found
        profile = self._create(account, now) if created else self.profiles[found[0]]
        self._merge_ids(profile, identity, may_change_ids)
        for name, value in attributes.items():
            if value is not None:
                profile.attributes[name] = value
            elif clear_nulls:
                profile.attributes.pop(name, None)
        profile.properties.update(properties)
        profile.updated = now
        return profile, created

    def _create(self, account: str, now: float) -> Profile:
        self._next += 1
        # Klaviyo ids are 26-character ULIDs; a counter keeps test output reproducible.
        profile = Profile(f"01EMU{self._next:021d}", account, created=now)
        self.profiles[profile.id] = profile
        return profile

    def _merge_ids(self, profile: Profile, identity: Identity, may_change: bool) -> None:
        for kind in _MATCH_ORDER:
            value = identity.ids.get(kind)
            current = profile.ids.get(kind)
            if value is None or value == current:
                continue
            if current is not None and not may_change:
                continue  # client endpoints cannot change an existing identifier
            key = (profile.account, kind, value)
            if self._index.get(key, profile.id) != profile.id:
                continue  # owned by another profile: never move it silently
            if current is not None:
                del self._index[(profile.account, kind, current)]
            self._index[key] = profile.id
            profile.ids[kind] = value

    def delete(self, profile_id: str) -> Profile | None:
        """Remove a profile and free its identifiers; None if there is no such profile."""
        profile = self.profiles.pop(profile_id, None)
        if profile is None:
            return None
        for kind, value in profile.ids.items():
            self._index.pop((profile.account, kind, value), None)
        return profile

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """Profiles keyed by their first identifier (``account/identifier`` on a clash)."""
        out: dict[str, dict[str, Any]] = {}
        for profile in self.profiles.values():
            label = profile.label()
            if label in out:
                label = f"{profile.account}/{label}"
            out[label] = profile.to_json()
        return out
