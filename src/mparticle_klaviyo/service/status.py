"""``status``: what the store holds and what a running ``serve`` reports, as one document.

The store gives the backlog per connection and state, the dead letters by reason and, when
many nodes share it (PostgreSQL), the live nodes and who holds which account's lease; the
service's ``/metrics`` give running totals (counters since that ``serve`` started), per-second
rates between two reads, each endpoint's Retry-After gate, the credentials' state and Klaviyo
outages. ``status --json`` prints this document as it is: names, counts and times only, never a
key, a store password or a payload.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import msgspec
from prometheus_client.metrics_core import Metric

from mparticle_klaviyo.service.cluster import Cluster
from mparticle_klaviyo.store.base import DeadFilter, JobStore, StateCount

# Counters totalled per connection (over their other labels), by the name the document uses.
TOTALS = {
    "events_received": "mpk_events_received",
    "events_dropped": "mpk_events_dropped",
    "jobs_queued": "mpk_jobs_queued",
    "jobs_duplicate": "mpk_jobs_duplicate",
    "jobs_delivered": "mpk_jobs_delivered",
    "klaviyo_events_delivered": "mpk_klaviyo_events_delivered",
    "jobs_retried": "mpk_jobs_retried",
    "jobs_dead_lettered": "mpk_jobs_dead_lettered",
    "klaviyo_requests": "mpk_klaviyo_requests",
    "klaviyo_429": "mpk_klaviyo_429",
}
_TOTAL_NAMES = {family: name for name, family in TOTALS.items()}
# Dead jobs read at a time while counting them by reason.
_DEAD_PAGE = 1000


class Backlog(msgspec.Struct, frozen=True):
    """Jobs of one connection in one state, and the age of the oldest."""

    connection: str
    state: str
    jobs: int
    oldest_age_s: float | None


class DeadLetters(msgspec.Struct, frozen=True):
    """Dead-lettered jobs of one connection with one reason, in the store now."""

    connection: str
    reason: str
    jobs: int


class Gate(msgspec.Struct, frozen=True):
    """One endpoint's Retry-After gate: closed after a 429 until ``reopens_at``."""

    endpoint: str
    open: bool
    reopens_in_s: float
    reopens_at: str | None


class Credentials(msgspec.Struct, frozen=True):
    """``ok``, ``paused`` (Klaviyo answered 401/403: delivery waits), or ``unknown`` (no service)."""

    state: str
    since: str | None = None
    endpoint: str | None = None
    status: str | None = None
    code: str | None = None


class ConnectionStatus(msgspec.Struct, frozen=True):
    """What the running service reports for one connection (empty when it does not answer)."""

    name: str
    totals: dict[str, int]
    rates_per_s: dict[str, float] | None
    credentials: Credentials
    klaviyo_unreachable_since: str | None
    gates: list[Gate]


class Service(msgspec.Struct, frozen=True):
    """Where the running service's metrics were read, and whether it answered."""

    metrics_url: str
    reachable: bool
    sampled_s: float | None


class Status(msgspec.Struct, frozen=True):
    """The whole ``status`` document."""

    generated_at: str
    store: str
    backlog: list[Backlog]
    dead_letters: list[DeadLetters]
    service: Service
    connections: list[ConnectionStatus]
    # None where nobody read it (the console's in-process overview).
    cluster: Cluster | None = None


class Scrape(msgspec.Struct, frozen=True):
    """One or two reads of ``/metrics`` (``later``: ``seconds`` after ``first``, for rates)."""

    first: list[Metric]
    later: list[Metric] | None = None
    seconds: float = 0.0


def iso(unix: float) -> str:
    """``2026-01-31T12:00:00Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))


def backlog(counts: Iterable[StateCount], now: float) -> list[Backlog]:
    """The store's counts, sorted by connection and state."""
    return [
        Backlog(
            count.connection,
            count.state.name.lower(),
            count.count,
            None if count.oldest_created_at is None else round(now - count.oldest_created_at, 3),
        )
        for count in sorted(counts, key=lambda c: (c.connection, c.state))
    ]


def dead_letters(store: JobStore) -> list[DeadLetters]:
    """Dead jobs in the store by connection and reason, read page by page (memory stays flat)."""
    found: Counter[tuple[str, str]] = Counter()
    offset = 0
    while page := store.dead(DeadFilter(), _DEAD_PAGE, offset):
        found.update((job.connection, job.dead_reason or "unknown") for job in page)
        offset += len(page)
    return [DeadLetters(connection, reason, jobs) for (connection, reason), jobs in sorted(found.items())]


def totals(families: Iterable[Metric]) -> dict[str, dict[str, int]]:
    """Counter totals by connection, then by the document's name (``TOTALS``)."""
    found: dict[str, Counter[str]] = {}
    for family in families:
        name = _TOTAL_NAMES.get(family.name)
        if name is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                connection = sample.labels.get("connection", "")
                found.setdefault(connection, Counter())[name] += int(sample.value)
    return {connection: {name: counts[name] for name in TOTALS} for connection, counts in found.items()}


def rates(scrape: Scrape) -> dict[str, dict[str, float]] | None:
    """Per-second rates by connection between the two reads; None without a second read."""
    if scrape.later is None or scrape.seconds <= 0:
        return None
    before, after = totals(scrape.first), totals(scrape.later)
    return {
        connection: {
            name: round((value - before.get(connection, {}).get(name, 0)) / scrape.seconds, 3)
            for name, value in counts.items()
        }
        for connection, counts in after.items()
    }


def _samples(families: Iterable[Metric], name: str, connection: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in families
        if family.name == name
        for sample in family.samples
        if sample.labels.get("connection") == connection
    ]


def credentials(families: Sequence[Metric], connection: str) -> Credentials:
    """The connection's credentials as the service sees them."""
    refused = _samples(families, "mpk_credentials_refused_since_seconds", connection)
    if refused:
        labels, since = refused[0]
        return Credentials("paused", iso(since), labels.get("endpoint"), labels.get("status"), labels.get("code"))
    ok = _samples(families, "mpk_credentials_ok", connection)
    if ok and ok[0][1] == 0:
        return Credentials("paused")
    return Credentials("ok" if ok else "unknown")


def gates(families: Sequence[Metric], connection: str, now: float) -> list[Gate]:
    """Each endpoint's Retry-After gate, sorted by endpoint."""
    found = _samples(families, "mpk_retry_after_gate_seconds", connection)
    return [
        Gate(labels.get("endpoint", ""), seconds <= 0, round(seconds, 3), iso(now + seconds) if seconds > 0 else None)
        for labels, seconds in sorted(found, key=lambda item: item[0].get("endpoint", ""))
    ]


def unreachable_since(families: Sequence[Metric], connection: str) -> str | None:
    """Since when Klaviyo is unreachable for the connection (its circuit is open), or None."""
    found = [value for _, value in _samples(families, "mpk_klaviyo_unreachable_since_seconds", connection)]
    return iso(found[0]) if found and found[0] > 0 else None


def connection_status(name: str, scrape: Scrape | None, now: float) -> ConnectionStatus:
    """One connection's part of the document; empty when the service did not answer."""
    if scrape is None:
        return ConnectionStatus(name, {}, None, Credentials("unknown"), None, [])
    latest = scrape.later if scrape.later is not None else scrape.first
    measured = rates(scrape)
    return ConnectionStatus(
        name=name,
        totals=totals(latest).get(name, dict.fromkeys(TOTALS, 0)),
        rates_per_s=None if measured is None else measured.get(name, dict.fromkeys(TOTALS, 0.0)),
        credentials=credentials(latest, name),
        klaviyo_unreachable_since=unreachable_since(latest, name),
        gates=gates(latest, name, now),
    )


def scrape_metrics(url: str, sample_s: float, sleep: Callable[[float], None] = time.sleep) -> Scrape | None:
    """Read ``url`` once, and again ``sample_s`` later for rates (0: once); None when nobody answers."""
    try:
        first = read_families(url)
        if sample_s <= 0:
            return Scrape(first)
        sleep(sample_s)
        return Scrape(first, read_families(url), sample_s)
    except OSError:
        return None


def read_families(url: str) -> list[Metric]:
    """The metric families of a Prometheus text exposition at ``url`` (OSError when it is not there)."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(url, timeout=5) as response:
        return list(text_string_to_metric_families(response.read().decode()))


def build_status(
    *,
    store: str,
    counts: Iterable[StateCount],
    dead: list[DeadLetters],
    connections: Iterable[str],
    metrics_url: str,
    scrape: Scrape | None,
    now: float,
    cluster: Cluster | None = None,
) -> Status:
    """The ``status`` document from the store's counts and the service's metrics (None: not answering)."""
    return Status(
        generated_at=iso(now),
        store=store,
        backlog=backlog(counts, now),
        dead_letters=dead,
        service=Service(metrics_url, scrape is not None, scrape.seconds if scrape and scrape.later else None),
        connections=[connection_status(name, scrape, now) for name in sorted(connections)],
        cluster=cluster,
    )
