"""Delivery engine: the dispatcher, send-time packing, pacing (gate, two-window limiter, AIMD) and retries."""

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

__all__ = [
    "AdaptiveConcurrency",
    "Backoff",
    "BucketParams",
    "Clock",
    "FakeClock",
    "Lane",
    "LimiterParams",
    "MonotonicClock",
    "Permit",
    "RateLimiter",
    "RetryAfterGate",
    "Signal",
    "Transport",
    "derive_params",
    "parse_retry_after",
    "window_budgets",
]
