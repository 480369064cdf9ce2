"""Running totals a delivery engine's lanes update as they send (exported as metrics)."""

from __future__ import annotations


class Tally:
    """Requests sent, and the seconds spent waiting for the rate limiter and the Retry-After gate."""

    def __init__(self) -> None:
        self.sent = 0
        self.limiter_wait_s = 0.0
        self.gate_wait_s = 0.0
