"""One pure retry decision for every engine: what to do with Klaviyo's answer to a request.

``RetryPolicy.decide(outcome, attempts, age_s)`` (in the manner of Vector's ``RetryLogic``):

* ``Ack``: delivered;
* ``Throttle(gate_s)``: a 429: close the endpoint's gate for Retry-After (capped); not an attempt;
* ``Retry(delay_s)``: a transient failure (408, 5xx, timeout, reset): try again after a
  full-jitter backoff; it counts as an attempt;
* ``Bury(reason, detail, counted)``: give up. Klaviyo's refusal is ``http_<status>``; a
  transient failure past ``max_attempts`` is ``retries_exhausted:<cause>``, past ``max_age_s``
  ``max_age:<cause>`` (a 429 past it: ``max_age:throttled``).

``attempts`` are the failures counted before this answer; ``age_s`` is how long the job has
been trying (since it was queued). No I/O and no clock: the dispatcher, which ``serve`` and
``replay`` both run, reschedules or buries as told.
"""

from __future__ import annotations

import msgspec

from mparticle_klaviyo.delivery.backoff import Backoff
from mparticle_klaviyo.klaviyo.classify import Delivered, Outcome, Permanent, Retryable, Throttled

RETRIES_EXHAUSTED = "retries_exhausted"
MAX_AGE = "max_age"
THROTTLED = "throttled"


class Ack(msgspec.Struct, frozen=True):
    """Klaviyo accepted it."""


class Throttle(msgspec.Struct, frozen=True):
    """A 429: close the gate for ``gate_s`` and send again; not an attempt."""

    gate_s: float


class Retry(msgspec.Struct, frozen=True):
    """A transient failure: send again after ``delay_s``; an attempt."""

    delay_s: float


class Bury(msgspec.Struct, frozen=True):
    """Give up: ``reason`` (see the module docstring), ``detail``; ``counted``: an attempt."""

    reason: str
    detail: str
    counted: bool


Decision = Ack | Throttle | Retry | Bury


def dead_reason(limit: str, cause: str) -> str:
    """The reason of work that gave up: the limit it reached, then its last failure's cause."""
    return f"{limit}:{cause}"


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """The limits every engine retries within."""

    max_attempts: int = 8
    max_age_s: float = 7 * 86400
    default_retry_after_s: float = 1.0
    max_retry_after_s: float = 600.0

    def decide(self, outcome: Outcome, attempts: int, age_s: float, backoff: Backoff) -> Decision:
        """What to do with ``outcome`` after ``attempts`` counted failures, ``age_s`` seconds in."""
        if isinstance(outcome, Delivered):
            return Ack()
        if isinstance(outcome, Throttled):
            return self._throttled(outcome, age_s)
        if isinstance(outcome, Permanent):
            reason = f"http_{outcome.status}" if outcome.status else outcome.reason
            detail = outcome.detail if outcome.status == 0 else f"{outcome.reason}: {outcome.detail}"
            return Bury(reason, detail, counted=True)
        return self._transient(outcome, attempts, age_s, backoff)

    def gate_seconds(self, outcome: Throttled) -> float:
        """How long a 429 closes the gate: its Retry-After (a default if absent), capped."""
        seconds = self.default_retry_after_s if outcome.retry_after is None else outcome.retry_after
        # A bogus Retry-After of a day would silently stall delivery; cap it.
        return min(seconds, self.max_retry_after_s)

    def _throttled(self, outcome: Throttled, age_s: float) -> Decision:
        if age_s >= self.max_age_s:
            detail = f"still throttled after {age_s:.1f}s: {outcome.detail}".strip()
            return Bury(dead_reason(MAX_AGE, THROTTLED), detail, counted=False)
        return Throttle(self.gate_seconds(outcome))

    def _transient(self, outcome: Retryable, attempts: int, age_s: float, backoff: Backoff) -> Decision:
        failures = attempts + 1
        last = f"{outcome.reason} {outcome.detail}".strip()
        if failures >= self.max_attempts:
            detail = f"gave up after {failures} attempts in {age_s:.1f}s; last: {last}"
            return Bury(dead_reason(RETRIES_EXHAUSTED, outcome.reason), detail, counted=True)
        delay = backoff.delay(attempts)
        if age_s + delay > self.max_age_s:
            detail = f"older than max_age_s ({self.max_age_s:g}s) at attempt {failures}; last: {last}"
            return Bury(dead_reason(MAX_AGE, outcome.reason), detail, counted=True)
        return Retry(delay)
