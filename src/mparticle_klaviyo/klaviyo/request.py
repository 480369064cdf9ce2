"""The unit of work sent to Klaviyo: one HTTP request, built by the mapper, sent by the client."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

AuthKind = Literal["public", "private"]
RequestKind = Literal["event", "event_bulk", "subscription", "subscription_bulk", "unsubscription_bulk", "deletion"]


class KlaviyoRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One request to Klaviyo, without credentials (the client adds them at send time).

    ``path`` has no query string: the client appends ``?company_id=`` for public auth and an
    ``Authorization`` header for private auth, so keys never live in mapped output.
    ``event_keys`` are the ``unique_id`` values of the events the request carries, used for
    per-event accounting in summaries.
    """

    method: Literal["POST"] = "POST"
    path: str
    auth: AuthKind
    kind: RequestKind
    body: dict[str, Any]
    event_keys: tuple[str, ...] = ()

    @property
    def endpoint(self) -> str:
        """The rate-limit bucket name: method and path, e.g. ``POST /client/events``."""
        return f"{self.method} {self.path}"
