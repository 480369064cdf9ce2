"""Klaviyo outages and pauses made visible: gauges and a counter per connection, one log line per change."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from mparticle_klaviyo.delivery.circuit import Change, Circuit
from mparticle_klaviyo.delivery.lane import Lane
from mparticle_klaviyo.observe.metrics import Metrics, iso_time

log = logging.getLogger("mparticle_klaviyo.delivery")


class OutageReport:
    """Makes one account's circuit visible: a gauge and a counter per connection, a log line per change."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.connections: list[str] = []

    def add(self, connection: str) -> None:
        """Report for ``connection`` too; its series are exported (at 0) from now on."""
        self.connections.append(connection)
        self.metrics.unreachable_since.labels(connection).set(0)
        self.metrics.circuit_openings.labels(connection)

    def __call__(self, change: Change) -> None:
        """The circuit opened (one WARNING for the account) or closed (one INFO, with the duration)."""
        names = sorted(self.connections)
        since = time.time() if change.opened else 0.0
        for name in names:
            self.metrics.unreachable_since.labels(name).set(since)
            if change.opened:
                self.metrics.circuit_openings.labels(name).inc()
        if change.opened:
            log.warning(
                "Klaviyo unreachable since %s: %s", iso_time(since), change.reason, extra={"connections": names}
            )
        else:
            log.info("Klaviyo reachable again after %.1f s", change.down_s, extra={"connections": names})


def watch_outages(circuit: Circuit, connection: str, metrics: Metrics) -> None:
    """Report ``circuit`` for ``connection``: connections sharing an account share one report (one log line)."""
    report = circuit.listener
    if not isinstance(report, OutageReport):
        report = OutageReport(metrics)
        circuit.listener = report
    report.add(connection)


def watch_gates(lanes: Mapping[str, Lane], connection: str, metrics: Metrics) -> None:
    """Export each lane's Retry-After gate for ``connection``: seconds until it opens, read at scrape time."""
    for endpoint, lane in lanes.items():
        metrics.gate_closed.labels(connection, endpoint).set_function(lane.gate.remaining)
