"""The Retry-After gate: one per (account, endpoint), so a 429 pauses every sender, not just one.

Per-request backoff alone does not pause a pipeline: while the throttled request sleeps, its
siblings keep sending into the same exhausted window (Vector issue #4724). Every task therefore
awaits this shared gate before it asks the limiter for a token.
"""

from __future__ import annotations

import math

from mparticle_klaviyo.delivery.clock import Clock
from mparticle_klaviyo.klaviyo.retry_after import parse_retry_after as parse_retry_after  # re-exported


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
