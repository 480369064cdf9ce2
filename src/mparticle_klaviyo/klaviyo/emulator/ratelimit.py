"""Klaviyo's per-account, per-endpoint rate limits: two FIXED windows, 1 s (burst) and 60 s.

Windows are aligned to the clock (second ``floor(t)``, minute ``floor(t / 60)``), so a client
limiter that is only correct for sliding windows can still be caught bursting across a
boundary. A throttled request does not use quota. Headers follow Klaviyo: a 429 carries only
``Retry-After`` (integer seconds); other answers carry ``RateLimit-Limit``,
``RateLimit-Remaining`` and ``RateLimit-Reset`` for the steady (minute) window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    second: int = -1
    second_count: int = 0
    minute: int = -1
    minute_count: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The limiter's answer for one request."""

    allowed: bool
    retry_after: int
    headers: dict[str, str]


class FixedWindowLimiter:
    """Counts requests per (account, endpoint) in the current second and minute."""

    def __init__(self, limits_for: Callable[[str], tuple[int, int]]) -> None:
        self._limits_for = limits_for
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def reset(self) -> None:
        """Forget all counts."""
        self._buckets.clear()

    def take(self, account: str, endpoint: str, now: float) -> Verdict:
        """Count one request at ``now`` unless a window is full."""
        per_second, per_minute = self._limits_for(endpoint)
        bucket = self._buckets.get((account, endpoint))
        if bucket is None:
            bucket = self._buckets[(account, endpoint)] = _Bucket()
        second, minute = int(now), int(now // 60)
        if bucket.second != second:
            bucket.second, bucket.second_count = second, 0
        if bucket.minute != minute:
            bucket.minute, bucket.minute_count = minute, 0
        waits = []
        if bucket.second_count >= per_second:
            waits.append(second + 1 - now)
        if bucket.minute_count >= per_minute:
            waits.append((minute + 1) * 60 - now)
        if waits:
            retry = max(1, math.ceil(max(waits)))
            return Verdict(False, retry, {"Retry-After": str(retry)})
        bucket.second_count += 1
        bucket.minute_count += 1
        reset = max(1, math.ceil((minute + 1) * 60 - now))
        headers = {
            "RateLimit-Limit": str(per_minute),
            "RateLimit-Remaining": str(max(0, per_minute - bucket.minute_count)),
            "RateLimit-Reset": str(reset),
        }
        return Verdict(True, 0, headers)
