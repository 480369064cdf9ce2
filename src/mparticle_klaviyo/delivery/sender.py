"""The delivery pipeline: stream requests through per-endpoint lanes, retrying what is transient.

Per request: lane (gate -> slot -> token) -> send -> classify, then
* Delivered: done;
then the retry policy shared with ``serve`` (``retry_policy.py``) decides:
* Throttle (429): close the lane's gate for Retry-After (1 s if absent) and resend; a throttle
  is not an attempt, but it is bounded by ``max_retry_age_s`` so an endless 429 cannot hang a run
  (``max_age:throttled``);
* Retry (408/5xx/timeouts/resets): sleep a full-jitter backoff and resend, up to ``max_attempts``
  and ``max_retry_age_s``, then fail as ``retries_exhausted:<cause>`` or ``max_age:<cause>``;
* Bury a refusal at once as ``http_<status>`` with Klaviyo's detail and error pointer.

``on_result`` hears every finished request and may return follow-up requests, which are
delivered in the same run (e.g. a bulk job re-sent without the entry Klaviyo refused).

Memory is bounded: at most ``max_pending`` requests are read ahead of the slowest unfinished one,
so replaying millions of requests holds a window, not the input.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterable, Mapping
from contextlib import aclosing

from mparticle_klaviyo.delivery.backoff import Backoff
from mparticle_klaviyo.delivery.clock import Clock, MonotonicClock
from mparticle_klaviyo.delivery.lane import Lane, Transport
from mparticle_klaviyo.delivery.report import DeliveryReport, Result, Tally
from mparticle_klaviyo.delivery.retry_policy import Ack, Bury, Retry, RetryPolicy, Throttle
from mparticle_klaviyo.klaviyo.classify import Delivered, Outcome, Permanent, Throttled, trim
from mparticle_klaviyo.klaviyo.limits import DEFAULT_RATE_LIMITS, RateLimit
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest

ResultCallback = Callable[[KlaviyoRequest, Result], Iterable[KlaviyoRequest] | None]
Requests = AsyncIterable[KlaviyoRequest] | Iterable[KlaviyoRequest]


class Sender:
    """Delivers a stream of requests to one Klaviyo account within its rate limits.

    Each endpoint in ``rate_limits`` gets its own lane (gate, limiter, AIMD concurrency between
    ``initial_concurrency`` and ``max_concurrency``); ``max_pending`` bounds requests read ahead.
    """

    def __init__(
        self,
        client: Transport,
        rate_limits: Mapping[str, RateLimit] = DEFAULT_RATE_LIMITS,
        *,
        max_concurrency: int = 64,
        max_attempts: int = 8,
        max_retry_age_s: float = 900.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        initial_concurrency: int = 4,
        max_pending: int | None = None,
        safety: float = 1.0,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        default_retry_after_s: float = 1.0,
        max_retry_after_s: float = 600.0,
    ) -> None:
        if max_attempts < 1 or max_concurrency < 1:
            raise ValueError("max_attempts and max_concurrency must be >= 1")
        self._client = client
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._backoff = Backoff(backoff_base_s, backoff_cap_s, rng)
        self.policy = RetryPolicy(
            max_attempts=max_attempts,
            max_age_s=max_retry_age_s,
            default_retry_after_s=default_retry_after_s,
            max_retry_after_s=max_retry_after_s,
        )
        self.max_attempts = max_attempts
        self.max_retry_age_s = max_retry_age_s
        self.max_pending = max_pending if max_pending is not None else max(16, 4 * max_concurrency)
        self._lanes = {
            endpoint: Lane(
                limit,
                self._clock,
                safety=safety,
                initial_concurrency=initial_concurrency,
                max_concurrency=max_concurrency,
            )
            for endpoint, limit in rate_limits.items()
        }

    def lane(self, endpoint: str) -> Lane:
        """The gate, limiter and concurrency of ``endpoint`` (KeyError when not configured)."""
        return self._lanes[endpoint]

    async def deliver(self, requests: Requests, on_result: ResultCallback | None = None) -> DeliveryReport:
        """Deliver every request and the follow-ups ``on_result`` returns; return the totals."""
        tally = Tally()
        started = self._clock.now()
        pending: dict[asyncio.Task[Result], KlaviyoRequest] = {}
        try:
            async with aclosing(_stream(requests)) as stream:
                async for request in stream:
                    while len(pending) >= self.max_pending:
                        await self._collect(pending, tally, on_result)
                    pending[asyncio.create_task(self._deliver_one(request, tally))] = request
            while pending:
                await self._collect(pending, tally, on_result)
        finally:
            # Reached with tasks left only on cancellation (Ctrl-C) or an error: stop them all and
            # wait for them, so no send outlives the run and nothing hangs.
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        return tally.report(self._clock.now() - started)

    async def _collect(
        self,
        pending: dict[asyncio.Task[Result], KlaviyoRequest],
        tally: Tally,
        on_result: ResultCallback | None,
    ) -> None:
        done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            request = pending.pop(task)
            result = task.result()
            tally.add(result)
            follow_ups = on_result(request, result) if on_result is not None else None
            for follow_up in follow_ups or ():
                pending[asyncio.create_task(self._deliver_one(follow_up, tally))] = follow_up

    async def _deliver_one(self, request: KlaviyoRequest, tally: Tally) -> Result:
        lane = self._lanes.get(request.endpoint)
        if lane is None:
            detail = f"no rate limit configured for {request.endpoint}"
            return Result(status="failed", attempts=0, reason="unknown_endpoint", detail=detail)
        started = self._clock.now()
        attempts = throttles = 0
        while True:
            outcome = await lane.send(self._client, request, tally)
            decision = self.policy.decide(outcome, attempts, self._clock.now() - started, self._backoff)
            if isinstance(decision, Throttle):
                throttles += 1
                tally.throttled += 1
                lane.gate.close_for(decision.gate_s)
                continue
            if isinstance(decision, Retry):
                attempts += 1
                tally.retries += 1
                await self._clock.sleep(decision.delay_s)
                continue
            if not isinstance(decision, Bury) or decision.counted:
                attempts += 1
            return _result(outcome, decision, attempts, throttles)


async def _stream(requests: Requests) -> AsyncGenerator[KlaviyoRequest, None]:
    """Iterate a sync or async source lazily, one item at a time."""
    if isinstance(requests, AsyncIterable):
        async for request in requests:
            yield request
    else:
        for request in requests:
            yield request


def _result(outcome: Outcome, decision: Ack | Bury, attempts: int, throttles: int) -> Result:
    """The request's result: delivered, or failed with the retry policy's reason."""
    if isinstance(outcome, Delivered):
        return Result(
            status="delivered",
            attempts=attempts,
            throttles=throttles,
            http_status=outcome.status,
            partial_failure=outcome.partial_failure,
        )
    assert isinstance(decision, Bury)
    status = 429 if isinstance(outcome, Throttled) else outcome.status
    return Result(
        status="failed",
        attempts=attempts,
        throttles=throttles,
        reason=decision.reason,
        detail=trim(decision.detail),
        http_status=status or None,
        pointer=outcome.pointer if isinstance(outcome, Permanent) else None,
    )
