"""Klaviyo's JSON:API error bodies, and the exception that carries one through the emulator.

Every error answer has the shape Klaviyo sends::

    {"errors": [{"id": "<uuid4>", "status": 400, "code": "invalid", "title": "Invalid input.",
                 "detail": "...", "source": {"pointer": "/data/..."}, "links": {}, "meta": {}}]}

with content type ``application/vnd.api+json``. ``source`` holds either ``pointer`` (a JSON
pointer into the body) or ``parameter`` (a query parameter or header name).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

JSON_API = "application/vnd.api+json"
"""The content type of every error body."""

INVALID_TITLE = "Invalid input."
"""The title Klaviyo gives every 400 ``invalid`` error."""

INVALID_PAYLOAD = "The payload provided in the request is invalid."
"""Klaviyo's detail for a body that is not JSON, not an object, or wrongly nested."""

_encoder = msgspec.json.Encoder()


class ApiError(Exception):
    """One error answer: raised anywhere in request handling, rendered by the app."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str,
        *,
        pointer: str | None = None,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
        links: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.pointer = pointer
        self.parameter = parameter
        self.headers = headers or {}
        self.links = links or {}
        self.meta = meta or {}

    def source(self) -> dict[str, str]:
        """The ``source`` member: the parameter at fault, else the pointer (``/data`` by default)."""
        if self.parameter is not None:
            return {"parameter": self.parameter}
        # Klaviyo points at /data when no one field is at fault (e.g. its 429 body).
        return {"pointer": self.pointer or "/data"}

    def body(self) -> bytes:
        """The encoded ``{"errors": [...]}`` document."""
        error = {
            "id": str(uuid.uuid4()),
            "status": self.status,
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
            "source": self.source(),
            "links": self.links,
            "meta": self.meta,
        }
        return _encoder.encode({"errors": [error]})


def invalid(detail: str, pointer: str) -> ApiError:
    """A 400 ``invalid`` error about the body field at ``pointer``."""
    return ApiError(400, "invalid", INVALID_TITLE, detail, pointer=pointer)


def invalid_parameter(detail: str, parameter: str) -> ApiError:
    """A 400 ``invalid`` error about a query parameter or header."""
    return ApiError(400, "invalid", INVALID_TITLE, detail, parameter=parameter)


def invalid_payload(pointer: str = "/data") -> ApiError:
    """Klaviyo's answer to a body that cannot be read as the expected structure."""
    return invalid(INVALID_PAYLOAD, pointer)


def unknown_field(key: str, resource: str, pointer: str) -> ApiError:
    """Klaviyo's answer to a key the resource does not declare."""
    return invalid(f"'{key}' is not a valid field for the resource '{resource}'.", pointer)


def required_field(key: str, resource: str, pointer: str) -> ApiError:
    """Klaviyo's answer to a missing required key."""
    return invalid(f"'{key}' is a required field for the resource '{resource}'.", pointer)


def not_found(detail: str = "Not found.") -> ApiError:
    """404: no such endpoint (or none at the revision sent)."""
    return ApiError(404, "not_found", "Not found.", detail)


def throttled(retry_after: int) -> ApiError:
    """429 with Klaviyo's throttled body and an integer ``Retry-After``."""
    unit = "second" if retry_after == 1 else "seconds"
    return ApiError(
        429,
        "throttled",
        "Request was throttled.",
        f"Request was throttled. Expected available in {retry_after} {unit}.",
        pointer="/data",
        headers={"Retry-After": str(retry_after)},
        links={"type": "https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling#rate-limits"},
    )


def server_fault(status: int) -> ApiError:
    """An injected 5xx: the body Klaviyo's gateway would plausibly give."""
    return ApiError(status, "error", "A server error occurred.", f"Injected fault: HTTP {status}.")
