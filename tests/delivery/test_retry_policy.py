"""The one retry decision replay and serve share: every outcome, at and past every limit."""

from __future__ import annotations

import random

import pytest

from mparticle_klaviyo.delivery.backoff import Backoff
from mparticle_klaviyo.delivery.retry_policy import Ack, Bury, Retry, RetryPolicy, Throttle
from mparticle_klaviyo.klaviyo.classify import Delivered, Permanent, Retryable, Throttled

POLICY = RetryPolicy(max_attempts=3, max_age_s=100.0, default_retry_after_s=2.0, max_retry_after_s=60.0)
BACKOFF = Backoff(1.0, 8.0, random.Random(7))
RESET = Retryable(reason="connection_reset", detail="peer closed")
HTTP_503 = Retryable(reason="http_503", status=503, detail="busy")


def test_a_success_is_acknowledged() -> None:
    assert POLICY.decide(Delivered(status=202), 5, 1e9, BACKOFF) == Ack()


@pytest.mark.parametrize(("retry_after", "gate"), [(None, 2.0), (5.0, 5.0), (86400.0, 60.0)])
def test_a_429_closes_the_gate_for_retry_after_capped_and_is_no_attempt(retry_after: float | None, gate: float) -> None:
    assert POLICY.decide(Throttled(retry_after=retry_after), 2, 10.0, BACKOFF) == Throttle(gate)


def test_a_429_past_the_maximum_age_is_buried_uncounted() -> None:
    decision = POLICY.decide(Throttled(retry_after=1.0, detail="slow down"), 0, 100.0, BACKOFF)
    assert isinstance(decision, Bury)
    assert (decision.reason, decision.counted) == ("max_age:throttled", False)


def test_a_refusal_is_buried_at_once_with_its_status() -> None:
    decision = POLICY.decide(Permanent(status=400, reason="invalid", detail="bad time"), 0, 0.0, BACKOFF)
    assert decision == Bury("http_400", "invalid: bad time", counted=True)


def test_an_error_of_ours_is_buried_with_its_own_reason() -> None:
    decision = POLICY.decide(Permanent(status=0, reason="invalid_url", detail="no host"), 0, 0.0, BACKOFF)
    assert decision == Bury("invalid_url", "no host", counted=True)


def test_a_transient_failure_is_retried_within_the_backoff_ceiling() -> None:
    for attempts in range(2):
        decision = POLICY.decide(HTTP_503, attempts, 0.0, BACKOFF)
        assert isinstance(decision, Retry)
        assert 0.0 <= decision.delay_s <= BACKOFF.ceiling(attempts)


def test_the_failure_that_reaches_max_attempts_buries_with_its_cause() -> None:
    decision = POLICY.decide(RESET, 2, 5.0, BACKOFF)
    assert isinstance(decision, Bury)
    assert (decision.reason, decision.counted) == ("retries_exhausted:connection_reset", True)
    assert "gave up after 3 attempts" in decision.detail


def test_a_retry_that_would_end_past_the_maximum_age_buries_instead() -> None:
    always_long = Backoff(1000.0, 1000.0, random.Random(1))
    decision = POLICY.decide(HTTP_503, 0, 99.0, always_long)
    assert isinstance(decision, Bury) and decision.reason == "max_age:http_503"
