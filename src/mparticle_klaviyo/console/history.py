"""The last hour of each connection's traffic, sampled in-process (no Prometheus needed).

Every ``EVERY_S`` the service's own counters are read from its registry and the totals kept in
a ring buffer of one hour; rates are differences between neighbouring samples. The latest
metric families are kept too: the overview reads gates and credentials from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import msgspec
from prometheus_client.metrics_core import Metric

from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.service.status import Scrape, totals

EVERY_S = 2.0
HOUR_S = 3600.0
# Series drawn by the chart, by the status document's names (service/status.py TOTALS).
CHARTED = ("events_received", "klaviyo_events_delivered", "klaviyo_429")


class Sample(msgspec.Struct, frozen=True):
    """Counter totals by connection at ``at`` (unix seconds)."""

    at: float
    totals: dict[str, dict[str, int]]


class History:
    """A ring buffer of samples covering the last hour, and the latest metric families."""

    def __init__(self, metrics: Metrics, every_s: float = EVERY_S) -> None:
        self.metrics = metrics
        self.every_s = every_s
        self.samples: deque[Sample] = deque(maxlen=int(HOUR_S / every_s) + 1)
        self.families: list[Metric] = []
        self.previous: list[Metric] = []

    def sample(self, now: float | None = None) -> None:
        """Read the counters once and append them."""
        families = list(self.metrics.registry.collect())
        self.previous, self.families = self.families or families, families
        self.samples.append(Sample(time.time() if now is None else now, totals(families)))

    def scrape(self) -> Scrape | None:
        """The last two reads, as ``status`` would have scraped them (None before the first)."""
        if not self.families:
            return None
        if len(self.samples) < 2:
            return Scrape(self.families)
        return Scrape(self.previous, self.families, self.samples[-1].at - self.samples[-2].at)

    def series(self, connections: Iterable[str]) -> dict[str, Any]:
        """Per connection and charted counter: per-second rates between neighbouring samples."""
        points = list(self.samples)
        times = [round(b.at, 1) for b in points[1:]]
        found: dict[str, dict[str, list[float]]] = {}
        for name in connections:
            found[name] = {counter: _rates(points, name, counter) for counter in CHARTED}
        return {"times": times, "every_s": self.every_s, "connections": found}

    async def run(self, stop: asyncio.Event) -> None:
        """Sample every ``every_s`` until ``stop`` is set."""
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)


def _rates(points: list[Sample], connection: str, counter: str) -> list[float]:
    """Per-second increase of one counter between neighbouring samples."""
    values = [p.totals.get(connection, {}).get(counter, 0) for p in points]
    spans = [b.at - a.at for a, b in itertools.pairwise(points)]
    return [
        round(max(0, b - a) / s, 3) if s > 0 else 0.0
        for (a, b), s in zip(itertools.pairwise(values), spans, strict=True)
    ]
