"""Klaviyo's documented event limits, checked before sending so no request is doomed."""

from __future__ import annotations

from typing import Any

import msgspec

from mparticle_klaviyo.errors import escape_pointer_token
from mparticle_klaviyo.klaviyo.limits import (
    MAX_ARRAY_ITEMS,
    MAX_BODY_BYTES,
    MAX_EVENT_PROPERTIES,
    MAX_METRIC_NAME_CHARS,
    MAX_NESTING,
    MAX_STRING_BYTES,
)

_encoder = msgspec.json.Encoder()
# Room for the JSON:API envelope, metric and profile identifiers around the properties.
_ENVELOPE_BYTES = 64 * 1024
# Below this encoded size no string can exceed 100 KB and no array 4000 items ("1," each).
_SMALL_BODY = min(MAX_STRING_BYTES, 2 * MAX_ARRAY_ITEMS)


class _Walk:
    """One pass over a JSON value to find the first broken limit and where it is."""

    def problem(self, value: Any, pointer: str, depth: int) -> str | None:
        """Check string sizes, array lengths and nesting depth."""
        if isinstance(value, str):
            # A string of n characters is at most 4n bytes of UTF-8: encode only long ones.
            too_long = (
                len(value) * 4 > MAX_STRING_BYTES and len(value.encode("utf-8", "surrogatepass")) > MAX_STRING_BYTES
            )
            return f"{pointer}: string longer than {MAX_STRING_BYTES} bytes" if too_long else None
        if isinstance(value, dict | list):
            if depth > MAX_NESTING:
                return f"{pointer}: nested deeper than {MAX_NESTING} levels"
            return self._container(value, pointer, depth)
        return None

    def _container(self, value: dict[str, Any] | list[Any], pointer: str, depth: int) -> str | None:
        if isinstance(value, list):
            if len(value) > MAX_ARRAY_ITEMS:
                return f"{pointer}: array of {len(value)} items (at most {MAX_ARRAY_ITEMS})"
            items: Any = enumerate(value)
        else:
            items = value.items()
        for key, item in items:
            problem = self.problem(item, f"{pointer}/{escape_pointer_token(str(key))}", depth + 1)
            if problem:
                return problem
        return None


def profile_limit_problem(profile_properties: dict[str, Any]) -> tuple[str | None, int]:
    """The first limit a profile's custom properties break (or None), and their encoded size."""
    encoded = _encoder.encode(profile_properties)
    if _surely_fits(encoded):
        return None, len(encoded)
    return _Walk().problem(profile_properties, "/profile/properties", 1), len(encoded)


def _surely_fits(encoded: bytes) -> bool:
    """Fast path for ordinary values: a short body cannot hold a long string or a long array,
    and fewer brackets than the nesting limit cannot nest too deep."""
    return len(encoded) <= _SMALL_BODY and encoded.count(b"{") + encoded.count(b"[") <= MAX_NESTING


def event_limit_problem(
    metric: str, properties: dict[str, Any], profile_properties: dict[str, Any], profile_bytes: int
) -> str | None:
    """Describe the first limit an event breaks (with a JSON pointer), or None if it fits.

    ``profile_bytes`` comes from ``profile_limit_problem``, computed once per batch.
    """
    if len(metric) > MAX_METRIC_NAME_CHARS:
        return f"metric name has {len(metric)} characters (at most {MAX_METRIC_NAME_CHARS})"
    if len(properties) > MAX_EVENT_PROPERTIES:
        return f"/properties: {len(properties)} properties (at most {MAX_EVENT_PROPERTIES})"
    encoded = _encoder.encode(properties)
    size = len(encoded) + profile_bytes
    # Small properties can still ride on a profile too big to send: the fast path needs both to fit.
    if _surely_fits(encoded) and size <= MAX_BODY_BYTES - _ENVELOPE_BYTES:
        return None
    problem = _Walk().problem(properties, "/properties", 1)
    if problem is None and size > MAX_BODY_BYTES - _ENVELOPE_BYTES:
        problem = f"event body of about {size} bytes (at most {MAX_BODY_BYTES})"
    return problem
