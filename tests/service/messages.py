"""Small mParticle messages built here, one per input shape, each with one forwardable event."""

from __future__ import annotations

import time
from typing import Any

# One timestamp for the whole test run: a message built twice is the same event (the same
# time too), as a resend by mParticle would be; the time also sits in mapping's window.
_NOW_MS = int(time.time() * 1000)


def now_ms() -> int:
    """The test run's fixed "now" in Unix milliseconds."""
    return _NOW_MS


def event(name: str | None = "Signed Up", message_id: str | None = "msg-1", **data: Any) -> dict[str, Any]:
    """A ``custom_event`` entry of a batch's ``events``."""
    body: dict[str, Any] = {"event_name": name, "custom_event_type": "other", "timestamp_unixtime_ms": now_ms()}
    if message_id is not None:
        body["source_message_id"] = message_id
    return {"event_type": "custom_event", "data": {**body, **data}}


def batch(email: str = "ada@example.com", events: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """An inbound Events API batch (identities as an object)."""
    return {
        "events": [event()] if events is None else events,
        "user_identities": {"email": email},
        "environment": "production",
        **fields,
    }


def outbound_batch(email: str = "ada@example.com", n_events: int = 1) -> dict[str, Any]:
    """A Webhook output batch: identities as an array, outbound ids."""
    return {
        "batch_id": 1234567890,
        "mpid": "8294853483724893049",
        "events": [event(f"Outbound {n}", f"out-{n}") for n in range(n_events)],
        "user_identities": [{"identity_type": "email", "identity": email}],
        "timestamp_unixtime_ms": now_ms(),
        "environment": "production",
    }


def firehose_events(
    email: str = "ada@example.com",
    events: list[dict[str, Any]] | None = None,
    settings: dict[str, str] | None = None,
    request_id: str = "3d1a3c9e-0c27-4a4e-9d1e-000000000001",
) -> dict[str, Any]:
    """A Firehose ``event_processing_request`` (empty ``events`` is a verification request)."""
    request: dict[str, Any] = {
        "type": "event_processing_request",
        "id": request_id,
        "timestamp_ms": now_ms(),
        "firehose_version": "2.8.0",
        "source_id": "source-1",
        "runtime_environment": {"type": "ios"},
        "user_identities": [{"type": "email", "encoding": "raw", "value": email}],
        "events": (
            [
                {
                    "type": "custom_event",
                    "id": "fh-event-1",
                    "timestamp_ms": now_ms(),
                    "name": "Opened Firehose",
                    "custom_event_type": "other",
                }
            ]
            if events is None
            else events
        ),
    }
    if settings is not None:
        request["account"] = {"account_id": 42, "account_settings": settings}
    return request


def registration_request() -> dict[str, Any]:
    """Firehose's ``module_registration_request``."""
    return {"type": "module_registration_request", "id": "reg-1", "timestamp_ms": now_ms(), "firehose_version": "2.8.0"}


def audience_subscription_request() -> dict[str, Any]:
    """A Firehose audience request: not supported by an event integration."""
    return {
        "type": "audience_subscription_request",
        "id": "aud-1",
        "timestamp_ms": now_ms(),
        "audience_id": 7,
        "action": "add",
    }


def dsr_request() -> dict[str, Any]:
    """A Firehose data subject (erasure) request."""
    return {
        "type": "dsr_processing_request",
        "id": "dsr-1",
        "timestamp_ms": now_ms(),
        "subject_request_id": "subject-request-1",
        "subject_request_type": "erasure",
        "subject_identities": {"email": {"encoding": "raw", "value": "ada@example.com"}},
        "regulation": "gdpr",
    }
