"""The metrics' names and exposition: no ``_created`` series, three units named apart."""

from __future__ import annotations

import subprocess
import sys

from prometheus_client.parser import text_string_to_metric_families

from mparticle_klaviyo.observe.metrics import Metrics

# A fresh interpreter: nothing else of this test run has touched prometheus_client's switch there.
EXPOSE = """
from mparticle_klaviyo.observe.metrics import Metrics
m = Metrics()
m.received.labels("acme", "events_api").inc()
m.delivered.labels("acme", "event").inc()
m.ingest_latency.labels("v2").observe(0.01)
print(m.exposition().decode())
"""


def names(metrics: Metrics) -> set[str]:
    return {family.name for family in text_string_to_metric_families(metrics.exposition().decode())}


def test_a_fresh_process_exports_no_created_series() -> None:
    done = subprocess.run([sys.executable, "-c", EXPOSE], capture_output=True, text=True, check=True, timeout=60)
    assert "mpk_events_received_total" in done.stdout
    assert "mpk_ingest_seconds_count" in done.stdout
    assert "_created" not in done.stdout


def test_counters_name_mparticle_events_jobs_and_klaviyo_events_apart() -> None:
    exported = names(Metrics())
    assert {"mpk_events_received", "mpk_events_dropped"} <= exported, "mParticle events"
    assert {"mpk_jobs_queued", "mpk_jobs_duplicate", "mpk_jobs_delivered", "mpk_jobs_dead_lettered"} <= exported
    assert "mpk_klaviyo_events_delivered" in exported, "Klaviyo events (a purchase makes one per product)"
    assert {"mpk_events_accepted", "mpk_events_duplicate"} & exported == set(), "they counted jobs"


def test_klaviyo_requests_are_counted_per_connection_for_the_429_share() -> None:
    metrics = Metrics()
    metrics.requests.labels("acme", "POST /client/events").inc()
    metrics.throttled.labels("acme", "POST /client/events").inc()
    value = metrics.registry.get_sample_value
    labels = {"connection": "acme", "endpoint": "POST /client/events"}
    assert value("mpk_klaviyo_requests_total", labels) == value("mpk_klaviyo_429_total", labels) == 1.0
