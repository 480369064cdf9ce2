"""Per-request results and the aggregate report of one delivery run."""

from __future__ import annotations

from typing import Literal

import msgspec

ResultStatus = Literal["delivered", "failed"]


class Result(msgspec.Struct, frozen=True, kw_only=True):
    """The final fate of one request.

    ``reason`` is a stable code for failures: ``http_<status>`` (Klaviyo refused it),
    ``retries_exhausted`` (transient failures outlasted ``max_attempts`` or the retry age),
    ``throttled_too_long`` (429s outlasted the retry age), ``unknown_endpoint`` (no rate limit
    configured), or a client-side code such as ``missing_private_key``. ``attempts`` counts sends
    that were not throttled; ``throttles`` counts 429s, which are not attempts. ``pointer`` is
    the JSON pointer of Klaviyo's refusal, naming the culprit (e.g. one entry of a bulk job).
    """

    status: ResultStatus
    attempts: int
    throttles: int = 0
    reason: str | None = None
    detail: str = ""
    http_status: int | None = None
    partial_failure: str | None = None
    pointer: str | None = None

    @property
    def ok(self) -> bool:
        """Whether Klaviyo accepted the request."""
        return self.status == "delivered"


class DeliveryReport(msgspec.Struct, frozen=True, kw_only=True):
    """Totals of one ``Sender.deliver`` run."""

    requests: int
    sent: int
    delivered: int
    failed: dict[str, int]
    throttled: int
    retries: int
    partial_failures: int
    limiter_wait_s: float
    gate_wait_s: float
    elapsed_s: float

    @property
    def failed_total(self) -> int:
        """Requests that failed, whatever the reason."""
        return sum(self.failed.values())


class Tally:
    """Mutable counters a run updates as it goes; ``report`` freezes them."""

    def __init__(self) -> None:
        self.requests = 0
        self.sent = 0
        self.delivered = 0
        self.failed: dict[str, int] = {}
        self.throttled = 0
        self.retries = 0
        self.partial_failures = 0
        self.limiter_wait_s = 0.0
        self.gate_wait_s = 0.0

    def add(self, result: Result) -> None:
        """Count one finished request."""
        self.requests += 1
        if result.ok:
            self.delivered += 1
            if result.partial_failure is not None:
                self.partial_failures += 1
        else:
            reason = result.reason or "unknown"
            self.failed[reason] = self.failed.get(reason, 0) + 1

    def report(self, elapsed_s: float) -> DeliveryReport:
        """Freeze the counters into a ``DeliveryReport``."""
        return DeliveryReport(
            requests=self.requests,
            sent=self.sent,
            delivered=self.delivered,
            failed=dict(sorted(self.failed.items())),
            throttled=self.throttled,
            retries=self.retries,
            partial_failures=self.partial_failures,
            limiter_wait_s=self.limiter_wait_s,
            gate_wait_s=self.gate_wait_s,
            elapsed_s=elapsed_s,
        )
