"""Rich rendering of ``status`` for people; ``status --json`` prints the same document as JSON."""

from __future__ import annotations

import calendar
import time

from rich.console import Console
from rich.table import Table

from mparticle_klaviyo.service.cluster import SHARED, Cluster
from mparticle_klaviyo.service.status import TOTALS, ConnectionStatus, Status

# The totals shown in the connections table, with their column titles (all are in --json).
_SHOWN_TOTALS = {
    "events_received": "events received",
    "jobs_queued": "jobs queued",
    "jobs_delivered": "jobs delivered",
    "klaviyo_events_delivered": "Klaviyo events",
    "jobs_retried": "retried",
    "jobs_dead_lettered": "dead-lettered",
    "klaviyo_429": "429s",
}


def print_status(console: Console, status: Status) -> None:
    """The backlog, dead letters, pauses and the running service's totals and rates."""
    console.print(backlog_table(status))
    if status.cluster is not None and status.cluster.mode == SHARED:
        console.print(nodes_table(status.cluster))
        console.print(leases_table(status.cluster))
    elif status.cluster is not None:
        console.print("cluster: single node (SQLite store)", markup=False, highlight=False)
    if status.dead_letters:
        console.print(dead_letters_table(status))
    for line in pause_lines(status, time.time()):
        console.print(line, markup=False, highlight=False)
    if not status.service.reachable:
        url = status.service.metrics_url
        console.print(f"rates: the service is not reachable at {url}", markup=False, highlight=False)
        return
    console.print(connections_table(status))
    if status.service.sampled_s is not None:
        console.print(rates_table(status))


def backlog_table(status: Status) -> Table:
    """Jobs per connection and state, with the oldest job's age."""
    table = Table(title=f"Job store ({status.store})", header_style="bold")
    for column in ("connection", "state", "jobs", "oldest job age"):
        table.add_column(column, justify="right" if column in ("jobs", "oldest job age") else "left")
    for row in status.backlog:
        age = "" if row.oldest_age_s is None else f"{row.oldest_age_s:,.0f}s"
        table.add_row(row.connection, row.state, f"{row.jobs:,}", age)
    if not status.backlog:
        table.add_row("(empty)", "", "0", "")
    return table


def nodes_table(cluster: Cluster) -> Table:
    """The live nodes on the shared store, with the age of each one's last heartbeat."""
    table = Table(title=f"Nodes ({len(cluster.nodes)} live)", header_style="bold")
    table.add_column("node")
    table.add_column("last heartbeat", justify="right")
    table.add_column("counts as dead in", justify="right")
    for node in cluster.nodes:
        table.add_row(node.node, f"{node.heartbeat_age_s:,.1f}s ago", f"{node.expires_in_s:,.1f}s")
    if not cluster.nodes:
        table.add_row("(none: no serve is running)", "", "")
    return table


def leases_table(cluster: Cluster) -> Table:
    """Which node delivers which Klaviyo account (named by its connections), under which epoch."""
    table = Table(title="Delivery leases per Klaviyo account", header_style="bold")
    for column in ("connections", "account", "node", "epoch", "expires in"):
        table.add_column(column, justify="right" if column in ("epoch", "expires in") else "left")
    for lease in cluster.leases:
        held = lease.node is not None and lease.expires_in_s is not None
        table.add_row(
            ", ".join(lease.connections) or "(not in this config)",
            lease.account,
            lease.node if held else "(free)",
            str(lease.epoch) if held else "",
            f"{lease.expires_in_s:,.1f}s" if held else "",
        )
    return table


def dead_letters_table(status: Status) -> Table:
    """Dead letters in the store by connection and reason."""
    table = Table(title="Dead letters (see `dlq list`)", header_style="bold")
    for column in ("connection", "reason", "jobs"):
        table.add_column(column, justify="right" if column == "jobs" else "left")
    for row in status.dead_letters:
        table.add_row(row.connection, row.reason, f"{row.jobs:,}")
    return table


def pause_lines(status: Status, now: float) -> list[str]:
    """One line per outage, refused key and closed Retry-After gate, naming its connection."""
    lines: list[str] = []
    for connection in status.connections:
        lines += _pauses(connection, now)
    return lines


def _pauses(connection: ConnectionStatus, now: float) -> list[str]:
    name, lines = connection.name, []
    if connection.klaviyo_unreachable_since is not None:
        since = connection.klaviyo_unreachable_since
        lines.append(f"{name}: Klaviyo unreachable since {since} ({_ago(since, now)})")
    refused = connection.credentials
    if refused.state == "paused" and refused.since is not None:
        said = f"{refused.status or ''} {refused.code or ''}".strip()
        lines.append(
            f"{name}: delivery paused: Klaviyo answered {said} on {refused.endpoint or ''} "
            f"since {refused.since} ({_ago(refused.since, now)})"
        )
    for gate in connection.gates:
        if not gate.open:
            lines.append(
                f"{name}: paused by Klaviyo (429 Retry-After) on {gate.endpoint} "
                f"until {gate.reopens_at} ({gate.reopens_in_s:,.0f}s)"
            )
    return lines


def _ago(when: str, now: float) -> str:
    """How long ago the UTC time ``when`` (as ``iso`` writes it) was: ``42s``."""
    seconds = now - calendar.timegm(time.strptime(when, "%Y-%m-%dT%H:%M:%SZ"))
    return f"{max(seconds, 0.0):,.0f}s"


def connections_table(status: Status) -> Table:
    """Per connection: credentials and the running totals since the service started."""
    table = Table(title=f"Since serve started (from {status.service.metrics_url})", header_style="bold")
    table.add_column("connection")
    table.add_column("credentials")
    for title in _SHOWN_TOTALS.values():
        table.add_column(title, justify="right")
    for connection in status.connections:
        counts = [f"{connection.totals.get(name, 0):,}" for name in _SHOWN_TOTALS]
        table.add_row(connection.name, connection.credentials.state, *counts)
    return table


def rates_table(status: Status) -> Table:
    """Per-second rates between the two reads of ``/metrics``."""
    seconds = status.service.sampled_s or 0.0
    table = Table(title=f"Rates over {seconds:g}s (from {status.service.metrics_url})", header_style="bold")
    table.add_column("metric")
    table.add_column("connection")
    table.add_column("per second", justify="right")
    for connection in status.connections:
        for name in TOTALS:
            rate = (connection.rates_per_s or {}).get(name, 0.0)
            table.add_row(name.replace("_", " "), connection.name, f"{rate:,.1f}")
    return table
