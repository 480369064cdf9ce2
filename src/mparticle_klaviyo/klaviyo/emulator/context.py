"""What an operation handler gets (the checked request facts) and what it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import EmulatorConfig
from .identity import Identity, profile_attributes, profile_properties
from .profile_store import Profile
from .state import State


@dataclass(slots=True)
class Reply:
    """A success answer: status, body bytes and extra headers."""

    status: int = 202
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Ctx:
    """One authenticated, rate-checked request about to be validated and recorded.

    ``record`` is False when the request must leave no trace (an unknown company id answered
    with a configured 2xx). ``client`` is True on /client/* endpoints, where an existing
    profile's identifiers cannot be changed. ``partial`` collects the field names reported in
    ``X-Klaviyo-Partial-Failure``.
    """

    account: str
    revision: str
    now: float
    endpoint: str
    client: bool
    record: bool
    state: State
    config: EmulatorConfig
    partial: set[str] = field(default_factory=set)

    def note(self, identity: Identity) -> None:
        """Report an ignored invalid phone number in the partial-failure header."""
        if identity.phone_ignored:
            self.partial.add("phone_number")

    def upsert(self, identity: Identity, resource: dict[str, Any]) -> Profile:
        """Create or update the profile of ``resource`` under this request's account rules."""
        profile, _ = self.state.profiles.upsert(
            self.account,
            identity,
            profile_attributes(resource),
            profile_properties(resource),
            now=self.now,
            may_change_ids=not self.client,
        )
        return profile
