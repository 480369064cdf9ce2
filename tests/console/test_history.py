"""The in-process ring buffer behind the overview's chart and rates."""

from __future__ import annotations

from mparticle_klaviyo.console.history import History
from mparticle_klaviyo.observe.metrics import Metrics


def test_rates_are_the_increase_per_second_between_samples() -> None:
    metrics = Metrics()
    history = History(metrics, every_s=2.0)
    history.sample(now=100.0)
    metrics.received.labels("acme", "events_api").inc(10)
    history.sample(now=102.0)
    series = history.series(["acme"])
    assert series["connections"]["acme"]["events_received"] == [5.0]
    assert series["times"] == [102.0]


def test_the_buffer_keeps_one_hour_of_samples() -> None:
    history = History(Metrics(), every_s=60.0)
    for minute in range(120):
        history.sample(now=minute * 60.0)
    assert len(history.samples) == 61
    assert history.samples[0].at == 59 * 60.0


def test_the_scrape_gives_status_two_reads_and_the_time_between() -> None:
    metrics = Metrics()
    history = History(metrics, every_s=2.0)
    assert history.scrape() is None
    history.sample(now=10.0)
    metrics.received.labels("acme", "webhook").inc(4)
    history.sample(now=12.0)
    scrape = history.scrape()
    assert scrape is not None and scrape.later is not None
    assert scrape.seconds == 2.0
