"""Prometheus metrics of the service, in their own registry (served at ``/metrics``).

Labels are connection names, endpoints and reason codes only: never keys, emails or phones.
Three units are counted apart: mParticle events (``mpk_events_*``: what ingest received or
dropped), jobs (``mpk_jobs_*``: one per forwardable event or consent change, queued, delivered,
retried, dead-lettered) and Klaviyo events (``mpk_klaviyo_events_delivered``: a purchase is one
per product).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

# No ``*_created`` series: one per labelled counter and histogram, doubling what Prometheus
# stores, for a start time nobody graphs. The switch is prometheus_client's, process-wide: set
# on import, before any metric of ours exists.
disable_created_metrics()  # type: ignore[no-untyped-call]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Every metric the service exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "mpk_events_received", "mParticle events in accepted ingest requests", ["connection", "input"], registry=r
        )
        self.queued = Counter(
            "mpk_jobs_queued",
            "Jobs durably queued (one per forwardable mParticle event or consent change)",
            ["connection"],
            registry=r,
        )
        self.duplicates = Counter(
            "mpk_jobs_duplicate", "Jobs not queued: the same job was queued before", ["connection"], registry=r
        )
        self.dropped = Counter(
            "mpk_events_dropped", "mParticle events never forwarded, by reason", ["connection", "reason"], registry=r
        )
        self.rejected = Counter(
            "mpk_requests_rejected", "Ingest requests refused (probes excluded)", ["input", "status"], registry=r
        )
        self.delivered = Counter("mpk_jobs_delivered", "Jobs Klaviyo accepted", ["connection", "kind"], registry=r)
        self.events_delivered = Counter(
            "mpk_klaviyo_events_delivered",
            "Klaviyo events in requests Klaviyo accepted (a purchase makes one per product)",
            ["connection"],
            registry=r,
        )
        self.requests = Counter(
            "mpk_klaviyo_requests", "Requests sent to Klaviyo, answered or not", ["connection", "endpoint"], registry=r
        )
        self.retried = Counter(
            "mpk_jobs_retried", "Jobs scheduled for another try", ["connection", "reason"], registry=r
        )
        self.dead = Counter(
            "mpk_jobs_dead_lettered", "Jobs moved to the dead letters", ["connection", "reason"], registry=r
        )
        self.throttled = Counter("mpk_klaviyo_429", "429 answers from Klaviyo", ["connection", "endpoint"], registry=r)
        self.gate_closed = Gauge(
            "mpk_retry_after_gate_seconds",
            "Seconds until the endpoint's Retry-After gate opens again (after a 429); 0 while open",
            ["connection", "endpoint"],
            registry=r,
        )
        self.backlog = Gauge("mpk_backlog_jobs", "Jobs per state", ["connection", "state"], registry=r)
        self.oldest = Gauge("mpk_oldest_job_age_seconds", "Age of the oldest ready job", ["connection"], registry=r)
        self.erasures = Counter(
            "mpk_erasures_accepted", "Erasure requests (GDPR/CCPA) durably queued", ["connection"], registry=r
        )
        self.erased = Counter(
            "mpk_jobs_erased", "Queued jobs dropped because their profile was erased", ["connection"], registry=r
        )
        self.blocked_profiles = Gauge(
            "mpk_blocked_profiles", "Profiles held by the barrier", ["connection"], registry=r
        )
        self.delivery_lease = Gauge(
            "mpk_delivery_lease",
            "1 while this node delivers the connection's Klaviyo account (holds its lease)",
            ["connection"],
            registry=r,
        )
        self.cluster_nodes = Gauge(
            "mpk_cluster_nodes", "Live serve nodes on the shared store (1 on SQLite: a single node)", registry=r
        )
        self.lease_holder = Gauge(
            "mpk_account_lease_holder",
            "The node holding the delivery lease of the connection's Klaviyo account; the value is the lease's epoch",
            ["connection", "node"],
            registry=r,
        )
        self.limiter_wait = Counter(
            "mpk_limiter_wait_seconds", "Time spent waiting for the rate limiter", ["connection"], registry=r
        )
        self.gate_wait = Counter(
            "mpk_retry_after_wait_seconds",
            "Time spent waiting for closed Retry-After gates",
            ["connection"],
            registry=r,
        )
        self.ingest_in_flight = Gauge(
            "mpk_ingest_requests_in_flight", "Ingest requests being read or processed", registry=r
        )
        self.ingest_waiting = Gauge(
            "mpk_ingest_requests_waiting", "Ingest requests waiting for memory budget, body unread", registry=r
        )
        self.ingest_budget_in_use = Gauge(
            "mpk_ingest_budget_bytes_in_use", "Ingest memory budget reserved by requests in flight", registry=r
        )
        self.client_disconnects = Counter(
            "mpk_ingest_client_disconnects", "Ingest requests whose client left before its body was read", registry=r
        )
        self.ingest_latency = Histogram(
            "mpk_ingest_seconds",
            "Ingest request latency (probes and /metrics excluded)",
            ["input"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.klaviyo_latency = Histogram(
            "mpk_klaviyo_request_seconds", "Klaviyo request latency", ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.unreachable_since = Gauge(
            "mpk_klaviyo_unreachable_since_seconds",
            "Unix time since which Klaviyo is unreachable (the account's circuit is open); 0 when reachable",
            ["connection"],
            registry=r,
        )
        self.circuit_openings = Counter(
            "mpk_klaviyo_circuit_openings",
            "Times Klaviyo became unreachable (circuit opened)",
            ["connection"],
            registry=r,
        )
        self.store_ok = Gauge(
            "mpk_store_ok", "1 while the job store takes jobs, 0 while a store problem stops ingest", registry=r
        )
        self.credentials_ok = Gauge(
            "mpk_credentials_ok",
            "1 while Klaviyo accepts the connection's credentials, 0 while a 401/403 pauses its delivery",
            ["connection"],
            registry=r,
        )
        self.credentials_refused_since = Gauge(
            "mpk_credentials_refused_since_seconds",
            "Unix time since which a 401/403 pauses delivery, with Klaviyo's answer; present only while paused",
            ["connection", "endpoint", "status", "code"],
            registry=r,
        )
        self.credential_probes = Counter(
            "mpk_credential_probes",
            "Probes of refused credentials, by verdict (accepted, refused, inconclusive)",
            ["connection", "verdict"],
            registry=r,
        )

    def exposition(self) -> bytes:
        """The text exposition format."""
        return bytes(generate_latest(self.registry))


def iso_time(unix: float) -> str:
    """``2026-01-31T12:00:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))
