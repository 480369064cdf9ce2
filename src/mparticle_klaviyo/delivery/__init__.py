"""Delivery engine: pacing (gate, two-window limiter, AIMD), retries and the streaming sender."""

from mparticle_klaviyo.delivery.backoff import Backoff
from mparticle_klaviyo.delivery.clock import Clock, FakeClock, MonotonicClock
from mparticle_klaviyo.delivery.concurrency import AdaptiveConcurrency, Permit, Signal
from mparticle_klaviyo.delivery.gate import RetryAfterGate, parse_retry_after
from mparticle_klaviyo.delivery.lane import Lane, Transport
from mparticle_klaviyo.delivery.ratelimit import (
    BucketParams,
    LimiterParams,
    RateLimiter,
    derive_params,
    window_budgets,
)
from mparticle_klaviyo.delivery.report import DeliveryReport, Result, ResultStatus
from mparticle_klaviyo.delivery.sender import ResultCallback, Sender

__all__ = [
    "AdaptiveConcurrency",
    "Backoff",
    "BucketParams",
    "Clock",
    "DeliveryReport",
    "FakeClock",
    "Lane",
    "LimiterParams",
    "MonotonicClock",
    "Permit",
    "RateLimiter",
    "Result",
    "ResultCallback",
    "ResultStatus",
    "RetryAfterGate",
    "Sender",
    "Signal",
    "Transport",
    "derive_params",
    "parse_retry_after",
    "window_budgets",
]
