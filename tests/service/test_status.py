"""The ``status`` document: the store's backlog and dead letters, the service's totals and pauses."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.service.status import (
    TOTALS,
    Credentials,
    Gate,
    Scrape,
    build_status,
    dead_letters,
    scrape_metrics,
)
from mparticle_klaviyo.store.base import NewJob
from mparticle_klaviyo.store.sqlite import SqliteJobStore

NOW = 1_764_000_000.0
EVENTS = "POST /client/events"


def families(metrics: Metrics) -> list[Metric]:
    return list(text_string_to_metric_families(metrics.exposition().decode()))


def busy_metrics() -> Metrics:
    """acme: traffic, a closed gate and refused credentials; beta: nothing yet."""
    metrics = Metrics()
    metrics.received.labels("acme", "events_api").inc(5)
    metrics.received.labels("acme", "firehose").inc(2)
    metrics.queued.labels("acme").inc(7)
    metrics.delivered.labels("acme", "event").inc(4)
    metrics.delivered.labels("acme", "subscription").inc(1)
    metrics.events_delivered.labels("acme").inc(6)
    metrics.dead.labels("acme", "http_400").inc(2)
    metrics.requests.labels("acme", EVENTS).inc(9)
    metrics.throttled.labels("acme", EVENTS).inc(3)
    metrics.gate_closed.labels("acme", EVENTS).set(12.5)
    metrics.gate_closed.labels("acme", "POST /client/subscriptions").set(0)
    metrics.credentials_ok.labels("acme").set(0)
    metrics.credentials_refused_since.labels("acme", EVENTS, "401", "authentication_failed").set(NOW - 60)
    metrics.credentials_ok.labels("beta").set(1)
    metrics.unreachable_since.labels("beta").set(NOW - 30)
    return metrics


def status_of(scrape: Scrape | None) -> dict[str, object]:
    status = build_status(
        store="jobs.sqlite3",
        counts=[],
        dead=[],
        connections=["beta", "acme"],
        metrics_url="http://127.0.0.1:1/metrics",
        scrape=scrape,
        now=NOW,
    )
    decoded: dict[str, object] = msgspec.json.decode(msgspec.json.encode(status))
    return decoded


def test_running_totals_are_summed_per_connection_over_their_other_labels() -> None:
    status = build_status(
        store="s",
        counts=[],
        dead=[],
        connections=["acme"],
        metrics_url="u",
        scrape=Scrape(families(busy_metrics())),
        now=NOW,
    )
    [acme] = status.connections
    assert acme.totals["events_received"] == 7
    assert (acme.totals["jobs_queued"], acme.totals["jobs_delivered"], acme.totals["klaviyo_events_delivered"]) == (
        7,
        5,
        6,
    )
    assert (acme.totals["klaviyo_requests"], acme.totals["klaviyo_429"], acme.totals["jobs_dead_lettered"]) == (9, 3, 2)
    assert set(acme.totals) == set(TOTALS)


def test_pauses_credentials_and_outages_are_read_per_connection() -> None:
    status = build_status(
        store="s",
        counts=[],
        dead=[],
        connections=["acme", "beta"],
        metrics_url="u",
        scrape=Scrape(families(busy_metrics())),
        now=NOW,
    )
    acme, beta = status.connections
    assert acme.credentials == Credentials("paused", "2025-11-24T15:59:00Z", EVENTS, "401", "authentication_failed")
    assert acme.gates == [
        Gate(EVENTS, False, 12.5, "2025-11-24T16:00:12Z"),
        Gate("POST /client/subscriptions", True, 0.0, None),
    ]
    assert (beta.credentials.state, beta.klaviyo_unreachable_since) == ("ok", "2025-11-24T15:59:30Z")
    assert acme.klaviyo_unreachable_since is None


def test_rates_come_from_two_reads_apart() -> None:
    metrics = busy_metrics()
    first = families(metrics)
    metrics.delivered.labels("acme", "event").inc(10)
    status = build_status(
        store="s",
        counts=[],
        dead=[],
        connections=["acme"],
        metrics_url="u",
        scrape=Scrape(first, families(metrics), 2.0),
        now=NOW,
    )
    [acme] = status.connections
    assert acme.rates_per_s is not None
    assert (acme.rates_per_s["jobs_delivered"], acme.rates_per_s["events_received"]) == (5.0, 0.0)
    assert status.service.sampled_s == 2.0


def test_without_a_service_the_document_says_so_and_keeps_the_store_part() -> None:
    document = status_of(None)
    assert document["service"] == {"metrics_url": "http://127.0.0.1:1/metrics", "reachable": False, "sampled_s": None}
    assert document["connections"] == [
        {
            "name": name,
            "totals": {},
            "rates_per_s": None,
            "credentials": {"state": "unknown", "since": None, "endpoint": None, "status": None, "code": None},
            "klaviyo_unreachable_since": None,
            "gates": [],
        }
        for name in ("acme", "beta")
    ]


def test_a_service_that_does_not_answer_is_no_scrape() -> None:
    slept: list[float] = []
    assert scrape_metrics("http://127.0.0.1:9/metrics", 1.0, slept.append) is None
    assert slept == []


def test_dead_letters_are_counted_by_connection_and_reason(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    try:
        jobs = [
            NewJob(connection=c, key=f"{c}{n}", profile_key="", kind="event", payload=b"")
            for c, n in [("acme", 1), ("acme", 2), ("acme", 3), ("beta", 1)]
        ]
        store.enqueue(jobs, time.time())
        ids = {job.key: job.id for name in ("acme", "beta") for job in store.claim(name, 10, 60.0, time.time())}
        store.bury([ids["acme1"], ids["acme2"]], "http_400", "refused", time.time())
        store.bury([ids["acme3"], ids["beta1"]], "retries_exhausted:http_503", "503", time.time(), failed=True)
        found = [(d.connection, d.reason, d.jobs) for d in dead_letters(store)]
    finally:
        store.close()
    assert found == [
        ("acme", "http_400", 2),
        ("acme", "retries_exhausted:http_503", 1),
        ("beta", "retries_exhausted:http_503", 1),
    ]
