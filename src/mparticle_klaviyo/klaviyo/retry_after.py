"""Klaviyo's ``Retry-After`` header, as seconds to wait (delay-seconds or an HTTP-date)."""

from __future__ import annotations

import re
from datetime import UTC
from email.utils import parsedate_to_datetime

_DELAY_SECONDS = re.compile(r"\d+(?:\.\d+)?")


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Parse Retry-After (delay-seconds or HTTP-date, RFC 9110 §10.2.3) into seconds from ``now``.

    ``now`` is wall-clock epoch seconds (``time.time()``), because an HTTP-date is wall-clock.
    Returns None for a missing or unparseable value and 0.0 for a date in the past.
    """
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        # asctime dates carry no zone; RFC 9110 says every HTTP-date is in GMT.
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
