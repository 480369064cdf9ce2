"""Pauses made visible: each endpoint's Retry-After gate as a gauge, read when scraped."""

from __future__ import annotations

from mparticle_klaviyo.delivery.clock import FakeClock
from mparticle_klaviyo.delivery.lane import Lane
from mparticle_klaviyo.delivery.outages import watch_gates
from mparticle_klaviyo.klaviyo.limits import RateLimit
from mparticle_klaviyo.observe.metrics import Metrics

EVENTS = "POST /client/events"
SUBSCRIPTIONS = "POST /client/subscriptions"


def test_a_gate_closed_by_a_429_shows_the_seconds_until_it_opens_then_zero() -> None:
    clock, metrics = FakeClock(), Metrics()
    lanes = {EVENTS: Lane(RateLimit(10, 100), clock), SUBSCRIPTIONS: Lane(RateLimit(10, 100), clock)}
    watch_gates(lanes, "acme", metrics)

    def gate(endpoint: str) -> float | None:
        return metrics.registry.get_sample_value(
            "mpk_retry_after_gate_seconds", {"connection": "acme", "endpoint": endpoint}
        )

    assert (gate(EVENTS), gate(SUBSCRIPTIONS)) == (0.0, 0.0), "exported, open, from the start"
    lanes[EVENTS].gate.close_for(30.0)
    clock.advance(10.0)
    assert (gate(EVENTS), gate(SUBSCRIPTIONS)) == (20.0, 0.0)
    clock.advance(25.0)
    assert gate(EVENTS) == 0.0
