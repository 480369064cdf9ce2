"""The Retry-After gate: one per (account, endpoint), so a 429 pauses every sender, not just one.

Per-request backoff alone does not pause a pipeline: while the throttled request sleeps, its
siblings keep sending into the same exhausted window (Vector issue #4724). Every task therefore
awaits this shared gate before it asks the limiter for a token.
"""

from __future__ import annotations

import math
import re
from datetime import UTC
from email.utils import parsedate_to_datetime

from mparticle_klaviyo.delivery.clock import Clock

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


class RetryAfterGate:
    """Shared pause: ``close_for`` blocks every ``wait_open`` caller until the deadline passes."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._blocked_until = -math.inf

    @property
    def blocked_until(self) -> float:
        """Clock time at which the gate opens (-inf when it was never closed)."""
        return self._blocked_until

    def close_for(self, seconds: float) -> None:
        """Keep the gate closed for ``seconds`` from now; never shortens an existing closure."""
        self._blocked_until = max(self._blocked_until, self._clock.now() + max(0.0, seconds))

    def remaining(self) -> float:
        """Seconds until the gate opens (0.0 when open)."""
        return max(0.0, self._blocked_until - self._clock.now())

    def is_open(self) -> bool:
        """Whether a request may be sent now."""
        return self.remaining() <= 0.0

    async def wait_open(self) -> float:
        """Wait until the gate is open, however often it is re-closed; return the seconds waited."""
        start = self._clock.now()
        # Loop: another 429 may extend the closure while we sleep.
        while (wait := self.remaining()) > 0.0:
            await self._clock.sleep(wait)
        return self._clock.now() - start
