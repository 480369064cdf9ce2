"""Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter")."""

from __future__ import annotations

import random

# 2**attempt overflows a float long before this; the cap has won by then anyway.
_MAX_EXPONENT = 64


class Backoff:
    """``delay(attempt) = uniform(0, min(cap, base * 2**attempt))``; the RNG is injectable.

    Full jitter spreads retries of requests that failed together (one 503 burst) over the whole
    interval instead of synchronising them into the next burst.
    """

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, rng: random.Random | None = None) -> None:
        if base_s < 0 or cap_s < 0:
            raise ValueError("base_s and cap_s must be >= 0")
        self.base_s = base_s
        self.cap_s = cap_s
        self._rng = rng if rng is not None else random.Random()

    def ceiling(self, attempt: int) -> float:
        """Largest delay ``delay(attempt)`` may return (attempt counts from 0)."""
        if attempt >= _MAX_EXPONENT:
            return self.cap_s
        return min(self.cap_s, self.base_s * 2.0 ** max(0, attempt))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        return self._rng.uniform(0.0, self.ceiling(attempt))
