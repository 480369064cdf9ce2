"""A connection's credentials as delivery sees them: a 401/403 pauses it until a probe passes.

A refused key (revoked, mistyped, or missing a scope) refuses every job alike, so burying jobs
one by one would empty the queue into the dead letters. Instead:

* OK: jobs flow. The first refusal (``refused``) PAUSES delivery: no job is claimed.
* PAUSED: when the next probe is due (``probe_every_s`` after the refusal, or at once when an
  operator asks with ``resume_now``), ``take_probe`` hands out one probe: PROBING.
* PROBING: one probe is out (an empty request to the refused endpoint, ``klaviyo/check.py``).
  Its verdict (``probed``): accepted resumes delivery (OK); refused waits ``probe_every_s`` for
  the next; inconclusive (Klaviyo unreachable, 5xx, 429) waits ``retry_probe_s``.

Only a probe's verdict ends a pause: answers to requests sent before it paused say nothing new.
A pure state machine on an injected clock; the listener hears once per pause and once per resume.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import msgspec

from mparticle_klaviyo.delivery.clock import Clock
from mparticle_klaviyo.klaviyo.check import Accepted, Refusal, Verdict


class State(enum.Enum):
    """Where delivery is; see the module docstring."""

    OK = "ok"
    PAUSED = "paused"
    PROBING = "probing"


class CredentialOptions(msgspec.Struct, frozen=True, kw_only=True):
    """How often a paused connection probes Klaviyo: after a refusal, and after no answer."""

    probe_every_s: float = 60.0
    retry_probe_s: float = 5.0


class Change(msgspec.Struct, frozen=True, kw_only=True):
    """Delivery paused for ``refusal``, or resumed after ``paused_s`` seconds."""

    paused: bool
    refusal: Refusal
    paused_s: float = 0.0


Listener = Callable[[Change], None]


class Credentials:
    """One connection's pause on refused credentials; see the module docstring."""

    def __init__(
        self, clock: Clock, options: CredentialOptions | None = None, listener: Listener | None = None
    ) -> None:
        o = options if options is not None else CredentialOptions()
        if not (o.probe_every_s > 0 and o.retry_probe_s > 0):
            raise ValueError("need probe_every_s > 0 and retry_probe_s > 0")
        self._clock = clock
        self._every_s = o.probe_every_s
        self._retry_s = o.retry_probe_s
        self.listener = listener
        self._state = State.OK
        self._refusal: Refusal | None = None
        self._paused_at = 0.0
        self._probe_at = 0.0

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    @property
    def refusal(self) -> Refusal | None:
        """Klaviyo's latest refusal while paused (None while OK)."""
        return self._refusal if self._state is not State.OK else None

    def paused(self) -> bool:
        """Whether delivery is paused (a probe may be out)."""
        return self._state is not State.OK

    def allowance(self, wanted: int) -> int:
        """How many jobs the dispatcher may claim: all it wants, or none while paused."""
        return wanted if self._state is State.OK else 0

    def probe_in(self) -> float:
        """Seconds until the next probe may go (0.0 while OK or while a probe is out)."""
        if self._state is not State.PAUSED:
            return 0.0
        return max(0.0, self._probe_at - self._clock.now())

    def refused(self, refusal: Refusal) -> bool:
        """Klaviyo refused a request's credentials; True when this refusal paused delivery."""
        if self._state is not State.OK:
            return False  # already paused: a request sent before the pause, nothing new
        self._state = State.PAUSED
        self._refusal = refusal
        self._paused_at = self._clock.now()
        self._probe_at = self._paused_at + self._every_s
        self._tell(Change(paused=True, refusal=refusal))
        return True

    def take_probe(self) -> Refusal | None:
        """The refusal to probe when a probe is due (the caller sends it: PROBING), else None."""
        if self._state is not State.PAUSED or self._clock.now() < self._probe_at:
            return None
        self._state = State.PROBING
        return self._refusal

    def probed(self, verdict: Verdict) -> None:
        """The probe's verdict: accepted resumes delivery, anything else waits for the next probe."""
        if self._state is not State.PROBING or self._refusal is None:
            return
        if isinstance(verdict, Accepted):
            self._resume(self._refusal)
        elif isinstance(verdict, Refusal):
            self._state, self._refusal = State.PAUSED, verdict  # its status and code may have changed
            self._probe_at = self._clock.now() + self._every_s
        else:
            self._state = State.PAUSED
            self._probe_at = self._clock.now() + self._retry_s

    def abandoned(self) -> None:
        """The probe ended without a verdict (cancelled, an error of ours): another may go at once."""
        if self._state is State.PROBING:
            self._state = State.PAUSED
            self._probe_at = self._clock.now()

    def resume_now(self) -> bool:
        """An operator fixed the key: probe at once instead of at the next interval; whether paused."""
        if self._state is State.PAUSED:
            self._probe_at = self._clock.now()
        return self._state is not State.OK

    def _resume(self, refusal: Refusal) -> None:
        paused_s = self._clock.now() - self._paused_at
        self._state = State.OK
        self._refusal = None
        self._tell(Change(paused=False, refusal=refusal, paused_s=paused_s))

    def _tell(self, change: Change) -> None:
        if self.listener is not None:
            self.listener(change)
