from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from mparticle_klaviyo.delivery import DeliveryReport, FakeClock, Result, Sender
from mparticle_klaviyo.klaviyo.limits import RateLimit
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from tests.delivery.helpers import EVENTS, RecordingTransport, client_for, event_request, max_in_window, run
from tests.delivery.scripted_server import ScriptedServer, Step, error_body

FAST = {EVENTS: RateLimit(10_000, 600_000)}


def sender(client: Any, limits: dict[str, RateLimit] | None = None, **options: Any) -> Sender:
    """A Sender with tiny backoffs so retry tests run in milliseconds."""
    defaults: dict[str, Any] = {"backoff_base_s": 0.001, "backoff_cap_s": 0.005, "rng": random.Random(0)}
    return Sender(client, FAST if limits is None else limits, **(defaults | options))


async def deliver_all(
    script: list[Step], count: int, *, default: Step | None = None, timeout_s: float = 5.0, **options: Any
) -> tuple[DeliveryReport, list[Result], ScriptedServer]:
    """Deliver ``count`` events to a scripted server; return the report, results and server."""
    results: list[Result] = []
    async with ScriptedServer(script, default) as server, client_for(server.url, timeout_s=timeout_s) as client:
        report = await sender(client, **options).deliver(
            (event_request(n) for n in range(count)), lambda _req, result: results.append(result)
        )
    return report, results, server


def test_every_request_is_delivered_and_counted() -> None:
    report, results, server = run(deliver_all([], 25))
    assert (report.requests, report.delivered, report.sent, report.failed) == (25, 25, 25, {})
    assert len(server.received) == 25
    assert all(r.ok and r.attempts == 1 for r in results)


def test_on_result_gets_each_request_with_its_own_result() -> None:
    seen: list[KlaviyoRequest] = []

    async def scenario() -> None:
        async with ScriptedServer() as server, client_for(server.url) as client:
            requests = [event_request(n) for n in range(10)]
            await sender(client).deliver(requests, lambda req, _res: seen.append(req))

    run(scenario())
    assert sorted(r.body["data"]["attributes"]["unique_id"] for r in seen) == sorted(f"u{n}" for n in range(10))


def test_an_async_iterable_of_requests_is_delivered() -> None:
    async def requests() -> AsyncIterator[KlaviyoRequest]:
        for n in range(5):
            await asyncio.sleep(0)
            yield event_request(n)

    async def scenario() -> DeliveryReport:
        async with ScriptedServer() as server, client_for(server.url) as client:
            return await sender(client).deliver(requests())

    assert run(scenario()).delivered == 5


def test_a_429_closes_the_gate_and_nothing_is_sent_until_retry_after_has_passed() -> None:
    throttle = Step(status=429, headers={"Retry-After": "1"}, delay_s=0.1)
    report, results, server = run(deliver_all([throttle], 40, limits={EVENTS: RateLimit(50, 3000)}))
    throttled_at = next(r.answered_at for r in server.received if r.status == 429)
    during = [r.at for r in server.received if throttled_at + 0.05 < r.at < throttled_at + 1.0]
    assert during == []
    assert any(r.at >= throttled_at + 1.0 for r in server.received)
    assert report.delivered == 40 and report.throttled == 1
    assert sorted(r.throttles for r in results) == [0] * 39 + [1]


def test_a_429_does_not_consume_an_attempt() -> None:
    throttles = [Step(status=429, headers={"Retry-After": "0"})] * 3
    report, results, _ = run(deliver_all(throttles, 1, max_attempts=1))
    assert results[0].ok
    assert (results[0].attempts, results[0].throttles) == (1, 3)
    assert report.throttled == 3


def test_a_429_without_retry_after_pauses_for_the_default() -> None:
    report, _, server = run(deliver_all([Step(status=429)], 1, default_retry_after_s=0.3))
    first, retry = server.received
    assert report.delivered == 1
    assert retry.at - first.answered_at >= 0.3


def test_resets_timeouts_and_5xx_are_retried_until_delivered() -> None:
    script = [Step(reset=True), Step(delay_s=0.5), Step(status=503), Step(status=502)]
    report, results, _ = run(deliver_all(script, 1, timeout_s=0.1))
    assert results[0].ok
    assert results[0].attempts == 5
    assert report.retries == 4


def test_a_request_that_always_fails_gives_up_after_max_attempts() -> None:
    report, results, server = run(deliver_all([], 1, default=Step(status=503), max_attempts=3))
    # The same reasons as serve's dead letters (delivery/retry_policy.py).
    assert results[0].reason == "retries_exhausted:http_503"
    assert results[0].attempts == 3
    assert "http_503" in results[0].detail
    assert len(server.received) == 3
    assert report.failed == {"retries_exhausted:http_503": 1}


def test_retries_stop_once_the_retry_age_is_exceeded() -> None:
    options = {"max_attempts": 1000, "max_retry_age_s": 0.2, "backoff_base_s": 0.05, "backoff_cap_s": 0.05}
    _, results, server = run(deliver_all([], 1, default=Step(status=503), **options))
    assert results[0].reason == "max_age:http_503"
    assert results[0].attempts < 10
    assert len(server.received) == results[0].attempts


def test_endless_429s_fail_as_throttled_past_the_retry_age() -> None:
    always_429 = Step(status=429, headers={"Retry-After": "0"})
    _, results, _ = run(deliver_all([], 1, default=always_429, max_retry_age_s=0.1))
    assert results[0].reason == "max_age:throttled"
    assert results[0].attempts == 0


def test_a_400_fails_at_once_with_klaviyo_detail() -> None:
    body = error_body(400, "invalid", "Invalid email", "/data/attributes/profile/data/attributes/email")
    report, results, server = run(deliver_all([Step(status=400, body=body)], 1))
    assert results[0].reason == "http_400"
    assert results[0].http_status == 400
    assert results[0].detail == "invalid: Invalid email (at /data/attributes/profile/data/attributes/email)"
    assert results[0].attempts == 1
    assert len(server.received) == 1
    assert report.failed == {"http_400": 1}


def test_a_partial_failure_is_delivered_and_counted() -> None:
    report, results, _ = run(deliver_all([Step(headers={"X-Klaviyo-Partial-Failure": "1 of 2"})], 1))
    assert results[0].partial_failure == "1 of 2"
    assert report.partial_failures == 1


def test_an_endpoint_without_a_rate_limit_fails_as_unknown_endpoint() -> None:
    report, results, server = run(deliver_all([], 1, limits={}))
    assert results[0].reason == "unknown_endpoint"
    assert server.received == []
    assert report.failed == {"unknown_endpoint": 1}


def test_the_limiter_keeps_every_sliding_window_within_tiny_limits() -> None:
    clock = FakeClock()

    async def scenario() -> tuple[DeliveryReport, list[float]]:
        async with ScriptedServer() as server, client_for(server.url) as client:
            transport = RecordingTransport(client, clock)
            limits = {EVENTS: RateLimit(5, 20)}
            report = await sender(transport, limits, clock=clock).deliver(event_request(n) for n in range(50))
            return report, transport.sent_at

    report, sent_at = run(scenario())
    assert report.delivered == 50
    assert max_in_window(sent_at, 1.0) <= 5
    assert max_in_window(sent_at, 60.0) <= 20
    assert report.limiter_wait_s > 0


def test_requests_arrive_at_the_server_within_the_burst_limit_in_real_time() -> None:
    limits = {EVENTS: RateLimit(20, 2000)}
    report, _, server = run(deliver_all([], 30, limits=limits, safety=0.9))
    arrivals = sorted(r.at for r in server.received)
    assert report.delivered == 30
    assert max_in_window(arrivals, 1.0) <= 20


@pytest.mark.parametrize("pushback", [Step(status=429, headers={"Retry-After": "0"}), Step(status=503)])
def test_aimd_concurrency_shrinks_on_throttles_and_server_errors(pushback: Step) -> None:
    async def scenario() -> int:
        async with ScriptedServer([pushback] * 10) as server, client_for(server.url) as client:
            pipeline = sender(client, initial_concurrency=10, max_concurrency=10)
            await pipeline.deliver(event_request(n) for n in range(10))
            return pipeline.lane(EVENTS).concurrency.limit

    assert run(scenario()) < 10


def test_aimd_concurrency_grows_on_successes() -> None:
    async def scenario() -> int:
        async with ScriptedServer(default=Step(delay_s=0.002)) as server, client_for(server.url) as client:
            pipeline = sender(client, initial_concurrency=1, max_concurrency=16)
            await pipeline.deliver(event_request(n) for n in range(200))
            return pipeline.lane(EVENTS).concurrency.limit

    assert run(scenario()) >= 8


def test_a_huge_lazy_input_is_read_only_a_bounded_window_ahead() -> None:
    progress = {"pulled": 0, "finished": 0, "ahead": 0}

    def endless() -> Iterator[KlaviyoRequest]:
        for n in range(10**9):
            progress["pulled"] += 1
            progress["ahead"] = max(progress["ahead"], progress["pulled"] - progress["finished"])
            yield event_request(n)

    async def scenario() -> None:
        async with ScriptedServer() as server, client_for(server.url) as client:
            run_task: asyncio.Task[DeliveryReport] | None = None

            def on_result(_req: KlaviyoRequest, _res: Result) -> None:
                progress["finished"] += 1
                if progress["finished"] == 300 and run_task is not None:
                    run_task.cancel()

            run_task = asyncio.create_task(sender(client, max_pending=20).deliver(endless(), on_result))
            with pytest.raises(asyncio.CancelledError):
                await run_task

    run(scenario())
    assert progress["finished"] >= 300
    assert progress["ahead"] <= 21


def test_cancelling_a_run_returns_promptly_and_stops_sending() -> None:
    async def scenario() -> tuple[float, int, int]:
        async with ScriptedServer(default=Step(delay_s=2.0)) as server, client_for(server.url) as client:
            task = asyncio.create_task(sender(client).deliver(event_request(n) for n in range(1000)))
            await asyncio.sleep(0.3)
            started = time.monotonic()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            elapsed = time.monotonic() - started
            before = len(server.arrivals)
            await asyncio.sleep(0.2)
            return elapsed, before, len(server.arrivals)

    elapsed, before, after = run(scenario())
    assert elapsed < 0.5
    assert before == after
