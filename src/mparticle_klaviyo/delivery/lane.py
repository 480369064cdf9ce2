"""One lane per (account, endpoint): its Retry-After gate, rate limiter and AIMD concurrency.

Order of one send: gate -> concurrency slot -> limiter token -> gate re-check -> HTTP. The token
is taken last, immediately before the request goes out: tokens taken earlier and then held while
waiting for a slot would leave together when slots free up, and the limiter's sliding-window
promise would hold for tokens but not for requests on the wire. A token taken while a 429 closed
the gate is thrown away (conservative) rather than spent in a burst when the gate reopens.

``try_send`` (the service) also goes through the account's circuit (``circuit.py``): it is
asked before queueing for a slot, so nothing queues during an outage, and again right before the
request goes out, since it may have opened meanwhile (only the probe passes then).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Generic, NamedTuple, Protocol, TypeVar

from mparticle_klaviyo.delivery.circuit import Admission, Circuit, Paused
from mparticle_klaviyo.delivery.clock import Clock
from mparticle_klaviyo.delivery.concurrency import AdaptiveConcurrency, Signal
from mparticle_klaviyo.delivery.gate import RetryAfterGate
from mparticle_klaviyo.delivery.ratelimit import RateLimiter
from mparticle_klaviyo.delivery.report import Tally
from mparticle_klaviyo.klaviyo.classify import Delivered, Outcome, Permanent, Retryable, Throttled
from mparticle_klaviyo.klaviyo.limits import RateLimit
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest

T = TypeVar("T")
# Not sent: the connection's delivery is paused (refused credentials); not an attempt.
HELD = Paused(retry_in_s=0.0, reason="held")


class Packed(NamedTuple, Generic[T]):
    """A request built at the moment it may be sent, the job it is for, and what it settles."""

    request: KlaviyoRequest
    source: Hashable
    payload: T


class Transport(Protocol):
    """What a lane needs from a client: send one request, get its classified outcome."""

    async def send(self, request: KlaviyoRequest) -> Outcome:
        """Send ``request``; never raise for network trouble."""
        ...


class Lane:
    """The shared pacing state of one endpoint of one Klaviyo account."""

    def __init__(
        self,
        limit: RateLimit,
        clock: Clock,
        *,
        safety: float = 1.0,
        initial_concurrency: int = 4,
        max_concurrency: int = 64,
        circuit: Circuit | None = None,
    ) -> None:
        self.gate = RetryAfterGate(clock)
        self.limiter = RateLimiter(limit, clock, safety=safety)
        self.concurrency = AdaptiveConcurrency(
            initial=min(initial_concurrency, max_concurrency), ceiling=max_concurrency
        )
        # The account's, shared with its other lanes (``account_lanes``); only ``try_send`` uses it.
        self.circuit = circuit if circuit is not None else Circuit(clock)

    async def send(self, client: Transport, request: KlaviyoRequest, tally: Tally) -> Outcome:
        """Send ``request`` once, paced by this lane, and feed its outcome to AIMD (no circuit)."""
        async with self._paced(tally) as slot:
            return await slot.send(client, request)

    async def try_send(
        self,
        client: Transport,
        request: KlaviyoRequest,
        tally: Tally,
        source: Hashable,
        hold: Callable[[], bool] | None = None,
    ) -> Outcome | Paused:
        """Send ``request`` (of the job ``source``) unless Klaviyo is unreachable: then pause it.

        ``Paused`` means: not sent, or failed while the circuit was open or by opening it; the
        job goes back to the queue without an attempt counted. A failure that leaves the circuit
        closed (an isolated one) is returned as it is, and counts. ``hold`` (the connection's
        credentials pause) is asked before queueing and again once a slot is granted: requests
        queued behind the one that got a 401 do not follow it.
        """
        if self.circuit.peek() is Admission.REFUSE:
            return self.circuit.paused()
        if hold is not None and hold():
            return HELD
        async with self._paced(tally) as slot:
            if hold is not None and hold():
                return HELD
            admission = self.circuit.admit()
            if admission is Admission.REFUSE:
                return self.circuit.paused()
            probe = admission is Admission.PROBE
            try:
                outcome = await slot.send(client, request)
            except BaseException:
                self.circuit.abandoned(probe=probe)
                raise
        return self._heard(outcome, source, probe)

    async def try_send_packed(
        self, client: Transport, pack: Callable[[], Packed[T] | None], tally: Tally
    ) -> tuple[T, Outcome | Paused] | None:
        """Like ``try_send``, but the request is built by ``pack`` once this lane admits one.

        So a request carries what waits at the moment it may leave, not what waited when it
        started queueing. None: ``pack`` had nothing by then (no request was sent).
        """
        if self.circuit.peek() is Admission.REFUSE:
            packed = pack()
            return None if packed is None else (packed.payload, self.circuit.paused())
        async with self._paced(tally) as slot:
            admission = self.circuit.admit()
            packed = pack()
            if packed is None:
                if admission is Admission.PROBE:
                    self.circuit.abandoned(probe=True)
                return None
            if admission is Admission.REFUSE:
                return packed.payload, self.circuit.paused()
            probe = admission is Admission.PROBE
            try:
                outcome = await slot.send(client, packed.request)
            except BaseException:
                self.circuit.abandoned(probe=probe)
                raise
        return packed.payload, self._heard(outcome, packed.source, probe)

    def _heard(self, outcome: Outcome, source: Hashable, probe: bool) -> Outcome | Paused:
        """Tell the circuit what came back; a failure it does not charge becomes ``Paused``."""
        if isinstance(outcome, Retryable):
            if self.circuit.failed(source, _reason(outcome), probe=probe):
                return outcome
            return self.circuit.paused(probe=probe)
        if isinstance(outcome, Permanent) and outcome.status == 0:
            self.circuit.abandoned(probe=probe)  # an error of ours says nothing about Klaviyo
        else:
            self.circuit.succeeded(probe=probe)
        return outcome

    @contextlib.asynccontextmanager
    async def _paced(self, tally: Tally) -> AsyncIterator[_Slot]:
        """Gate, slot and token; the slot is released with what its request experienced."""
        tally.gate_wait_s += await self.gate.wait_open()
        permit = await self.concurrency.acquire()
        slot = _Slot(tally)
        try:
            await self._take_token(tally)
            yield slot
        finally:
            self.concurrency.release(permit, slot.signal)

    async def _take_token(self, tally: Tally) -> None:
        while True:
            tally.limiter_wait_s += await self.limiter.acquire()
            if self.gate.is_open():
                return
            tally.gate_wait_s += await self.gate.wait_open()


class _Slot:
    """One granted send: counts it and keeps its outcome's AIMD signal ("neutral" if unsent)."""

    def __init__(self, tally: Tally) -> None:
        self._tally = tally
        self.signal: Signal = "neutral"

    async def send(self, client: Transport, request: KlaviyoRequest) -> Outcome:
        """Send ``request`` and note its signal."""
        self._tally.sent += 1
        outcome = await client.send(request)
        self.signal = _signal(outcome)
        return outcome


def _signal(outcome: Outcome) -> Signal:
    """AIMD input: success grows the limit, 429/5xx/timeouts shrink it, 4xx says nothing."""
    if isinstance(outcome, Delivered):
        return "success"
    if isinstance(outcome, Throttled | Retryable):
        return "backpressure"
    return "neutral"


def _reason(outcome: Retryable) -> str:
    """Why Klaviyo looks unreachable, for the log: the code, and for transport errors their text.

    An HTTP error's text is Klaviyo's answer, which may echo data; a transport error's is ours
    (the client has already redacted keys from it).
    """
    return (
        outcome.reason if outcome.status is not None or not outcome.detail else f"{outcome.reason} ({outcome.detail})"
    )
