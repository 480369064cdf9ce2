"""The account's circuit: while Klaviyo is unreachable, delivery pauses instead of burning attempts.

States (one circuit per Klaviyo account, shared by all its lanes and connections):

* CLOSED: requests flow. Transient failures (connection refused or reset, timeouts, 408/5xx) are
  remembered until Klaviyo answers anything else (2xx, 429, 4xx). When ``threshold`` of them fall
  within ``window_s``, come from at least two different requests and have gone on for at least
  ``min_span_s``, the circuit OPENS. One request failing again and again on its own is that
  request's trouble, not an outage; a few failures in a row among hundreds of requests a second
  (a flaky Klaviyo) are a burst, not an outage, and do not last a second with no answer.
* OPEN: nothing is sent until ``retry_at``; then the first caller becomes the probe (PROBING).
* PROBING: exactly one request, the probe, is out; every other caller is refused. An answer
  closes the circuit; a transient failure reopens it for the next wait (``base_s`` doubling up
  to ``cap_s``, drawn from [wait/2, wait]); a probe that ends without saying anything about
  Klaviyo (cancelled, or an error of ours) reopens it due at once.

Invariants: at most one probe is out at a time; ``opened_at`` is set exactly when the circuit is
not CLOSED; only a probe's result changes an open circuit (requests already out when it opened
are neither charged nor heard); a failure counts against its request only when the circuit is
still CLOSED after it; the listener hears once per opening and once per closing.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable, Hashable

import msgspec

from mparticle_klaviyo.delivery.clock import Clock

# 2**n overflows long before this; the cap has won by then anyway.
_MAX_EXPONENT = 64


class State(enum.Enum):
    """Where the circuit is; see the module docstring."""

    CLOSED = "closed"
    OPEN = "open"
    PROBING = "probing"


class Admission(enum.Enum):
    """What a caller may do: send as usual, send the one probe, or not send."""

    SEND = "send"
    PROBE = "probe"
    REFUSE = "refuse"


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """The circuit opened (for ``reason``) or closed again after ``down_s`` seconds."""

    opened: bool
    reason: str
    down_s: float = 0.0


class Paused(msgspec.Struct, frozen=True, kw_only=True):
    """Not sent, or failed during an outage: send again in ``retry_in_s``; not an attempt."""

    retry_in_s: float
    reason: str


Listener = Callable[[Change], None]


class CircuitOptions(msgspec.Struct, frozen=True, kw_only=True):
    """When the circuit opens (``threshold`` failures within ``window_s``) and how it probes."""

    threshold: int = 5
    window_s: float = 30.0
    min_span_s: float = 1.0
    base_s: float = 1.0
    cap_s: float = 60.0


class Circuit:
    """One Klaviyo account's circuit breaker; a pure state machine on an injected clock."""

    def __init__(
        self,
        clock: Clock,
        options: CircuitOptions | None = None,
        *,
        rng: random.Random | None = None,
        listener: Listener | None = None,
    ) -> None:
        o = options if options is not None else CircuitOptions()
        if o.threshold < 2 or not 0 <= o.min_span_s < o.window_s or not 0 < o.base_s <= o.cap_s:
            raise ValueError("need threshold >= 2, 0 <= min_span_s < window_s and 0 < base_s <= cap_s")
        self._clock = clock
        self._threshold = o.threshold
        self._window_s = o.window_s
        self._min_span_s = o.min_span_s
        self._base_s = o.base_s
        self._cap_s = o.cap_s
        self._rng = rng if rng is not None else random.Random()
        self.listener = listener
        self._state = State.CLOSED
        self._failures: deque[tuple[float, Hashable]] = deque()
        self._opened_at: float | None = None
        self._retry_at = 0.0
        self._probes_failed = 0
        self.reason = ""
        self.openings = 0

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def opened_at(self) -> float | None:
        """Clock time at which the current outage began (None while CLOSED)."""
        return self._opened_at

    def peek(self) -> Admission:
        """What ``admit`` would answer now, without taking the probe."""
        if self._state is State.CLOSED:
            return Admission.SEND
        if self._state is State.OPEN and self._clock.now() >= self._retry_at:
            return Admission.PROBE
        return Admission.REFUSE

    def admit(self) -> Admission:
        """Call right before a request goes out; a PROBE answer makes the caller the probe."""
        admission = self.peek()
        if admission is Admission.PROBE:
            self._state = State.PROBING
        return admission

    def allowance(self, wanted: int) -> int:
        """How many jobs a dispatcher may claim: all it wants, one to carry the probe, or none."""
        admission = self.peek()
        if admission is Admission.SEND:
            return wanted
        return min(1, wanted) if admission is Admission.PROBE else 0

    def retry_in(self) -> float:
        """Seconds until the next probe may go (0.0 while CLOSED or while a probe is out)."""
        if self._state is not State.OPEN:
            return 0.0
        return max(0.0, self._retry_at - self._clock.now())

    def paused(self, *, probe: bool = False) -> Paused:
        """The answer for a request refused or failed while open.

        A failed probe's own request waits one interval more than the others, so the next probe
        is another request: one that fails for reasons of its own cannot hold the circuit open.
        """
        wait = self.retry_in()
        return Paused(retry_in_s=2 * wait if probe else wait, reason=self.reason)

    def succeeded(self, *, probe: bool) -> None:
        """Klaviyo answered (2xx, 429, 4xx): a probe's answer closes; others end a failure streak."""
        if probe and self._state is State.PROBING:
            self._close()
        elif self._state is State.CLOSED:
            self._failures.clear()

    def failed(self, source: Hashable, reason: str, *, probe: bool) -> bool:
        """A transient failure of the request ``source``; whether it counts against that request."""
        if probe and self._state is State.PROBING:
            self._probes_failed += 1
            self._wait(self._probes_failed)
            return False
        if self._state is not State.CLOSED:
            return False  # out before it opened: part of the outage, not the request's fault
        now = self._clock.now()
        self._failures.append((now, source))
        while self._failures[0][0] < now - self._window_s:
            self._failures.popleft()
        if self._persists(now):
            self._open(reason, now)
            return False
        return True

    def _persists(self, now: float) -> bool:
        """Whether the failures since the last answer look like an outage (see the module docstring)."""
        failures = self._failures
        return (
            len(failures) >= self._threshold
            and now - failures[0][0] >= self._min_span_s
            and len({source for _, source in failures}) >= 2
        )

    def abandoned(self, *, probe: bool) -> None:
        """A request ended without news of Klaviyo; if it was the probe, another may go at once."""
        if probe and self._state is State.PROBING:
            self._state = State.OPEN
            self._retry_at = self._clock.now()

    def _open(self, reason: str, now: float) -> None:
        self._failures.clear()
        self._opened_at = now
        self._probes_failed = 0
        self.reason = reason
        self.openings += 1
        self._wait(0)
        self._tell(Change(opened=True, reason=reason))

    def _wait(self, probes_failed: int) -> None:
        """(Re)open until the next probe: ``base_s * 2**probes_failed`` capped, jittered down to half."""
        exponent = min(probes_failed, _MAX_EXPONENT)
        ceiling = min(self._cap_s, self._base_s * 2.0**exponent)
        self._state = State.OPEN
        self._retry_at = self._clock.now() + self._rng.uniform(ceiling / 2, ceiling)

    def _close(self) -> None:
        down_s = self._clock.now() - (self._opened_at or self._clock.now())
        self._state = State.CLOSED
        self._opened_at = None
        self._failures.clear()
        self._tell(Change(opened=False, reason=self.reason, down_s=down_s))

    def _tell(self, change: Change) -> None:
        if self.listener is not None:
            self.listener(change)
