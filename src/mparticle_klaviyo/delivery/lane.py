"""One lane per (account, endpoint): its Retry-After gate, rate limiter and AIMD concurrency.

Order of one send: gate -> concurrency slot -> limiter token -> gate re-check -> HTTP. The token
is taken last, immediately before the request goes out: tokens taken earlier and then held while
waiting for a slot would leave together when slots free up, and the limiter's sliding-window
promise would hold for tokens but not for requests on the wire. A token taken while a 429 closed
the gate is thrown away (conservative) rather than spent in a burst when the gate reopens.
"""

from __future__ import annotations

from typing import Protocol

from mparticle_klaviyo.delivery.clock import Clock
from mparticle_klaviyo.delivery.concurrency import AdaptiveConcurrency, Signal
from mparticle_klaviyo.delivery.gate import RetryAfterGate
from mparticle_klaviyo.delivery.ratelimit import RateLimiter
from mparticle_klaviyo.delivery.report import Tally
from mparticle_klaviyo.klaviyo.classify import Delivered, Outcome, Retryable, Throttled
from mparticle_klaviyo.klaviyo.limits import RateLimit
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest


class Transport(Protocol):
    """What a ``Sender`` needs from a client: send one request, get its classified outcome."""

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
    ) -> None:
        self.gate = RetryAfterGate(clock)
        self.limiter = RateLimiter(limit, clock, safety=safety)
        self.concurrency = AdaptiveConcurrency(
            initial=min(initial_concurrency, max_concurrency), ceiling=max_concurrency
        )

    async def send(self, client: Transport, request: KlaviyoRequest, tally: Tally) -> Outcome:
        """Send ``request`` once, paced by this lane, and feed its outcome to AIMD."""
        tally.gate_wait_s += await self.gate.wait_open()
        permit = await self.concurrency.acquire()
        signal: Signal = "neutral"
        try:
            await self._take_token(tally)
            tally.sent += 1
            outcome = await client.send(request)
            signal = _signal(outcome)
            return outcome
        finally:
            self.concurrency.release(permit, signal)

    async def _take_token(self, tally: Tally) -> None:
        while True:
            tally.limiter_wait_s += await self.limiter.acquire()
            if self.gate.is_open():
                return
            tally.gate_wait_s += await self.gate.wait_open()


def _signal(outcome: Outcome) -> Signal:
    """AIMD input: success grows the limit, 429/5xx/timeouts shrink it, 4xx says nothing."""
    if isinstance(outcome, Delivered):
        return "success"
    if isinstance(outcome, Throttled | Retryable):
        return "backpressure"
    return "neutral"
