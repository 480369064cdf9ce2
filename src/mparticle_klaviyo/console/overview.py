"""The overview: per connection what flows in and out, what waits, what failed, what is paused.

The document is ``status``'s (service/status.py), built from the store and the service's own
counters as sampled by ``History``; ``fragment`` renders it as the HTML the page polls.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from mparticle_klaviyo.console.history import History
from mparticle_klaviyo.console.html import PREFIX, esc, table
from mparticle_klaviyo.service.status import ConnectionStatus, DeadLetters, Status, build_status, dead_letters
from mparticle_klaviyo.store.aio import AsyncStore

# Dead letters are counted by paging through them: at most once per this many seconds.
DEAD_CACHE_S = 5.0


class Overview:
    """Builds the status document for the console, with the dead-letter count cached briefly."""

    def __init__(self, store: AsyncStore, history: History, connections: list[str], store_shown: str) -> None:
        self.store = store
        self.history = history
        self.connections = connections
        self.store_shown = store_shown
        self._dead: list[DeadLetters] = []
        self._dead_at = float("-inf")

    async def status(self) -> Status:
        """The document now."""
        if time.monotonic() - self._dead_at > DEAD_CACHE_S:
            self._dead = await self.store.on_thread(dead_letters)
            self._dead_at = time.monotonic()
        return build_status(
            store=self.store_shown,
            counts=await self.store.counts(),
            dead=self._dead,
            connections=self.connections,
            metrics_url="in-process",
            scrape=self.history.scrape(),
            now=time.time(),
        )


def fragment(status: Status) -> str:
    """The live part of the overview page: one section per connection."""
    sections = [_connection(c, status) for c in status.connections]
    return f"<p class=muted>Updated {esc(status.generated_at)}</p>" + "".join(sections)


def _connection(connection: ConnectionStatus, status: Status) -> str:
    name = connection.name
    rates = connection.rates_per_s or {}
    tiles = [
        ("Events in /s", _number(rates.get("events_received")), "in"),
        ("Events out /s", _number(rates.get("klaviyo_events_delivered")), "out"),
        ("429s /s", _number(rates.get("klaviyo_429")), "throttled"),
        ("Events received", str(connection.totals.get("events_received", 0)), "received"),
        ("Events delivered", str(connection.totals.get("klaviyo_events_delivered", 0)), "delivered"),
        ("429s", str(connection.totals.get("klaviyo_429", 0)), "429s"),
    ]
    cells = "".join(
        f'<div class=tile data-metric="{esc(key)}"><span>{esc(label)}</span><b>{esc(value)}</b></div>'
        for label, value, key in tiles
    )
    return (
        f'<section class=connection data-connection="{esc(name)}"><h2>{esc(name)}</h2>'
        f"<div class=tiles>{cells}</div>{_state_line(connection)}"
        f"<h3>Backlog</h3>{_backlog(name, status)}<h3>Dead letters</h3>{_dead(name, status)}</section>"
    )


def _state_line(connection: ConnectionStatus) -> str:
    """Credentials, Klaviyo's reachability and each closed Retry-After gate, in words."""
    credentials = connection.credentials
    words = [f"Credentials: {credentials.state}"]
    if credentials.state == "paused" and credentials.status:
        words[0] += f" (Klaviyo answered {credentials.status} on {credentials.endpoint})"
    if connection.klaviyo_unreachable_since:
        words.append(f"Klaviyo unreachable since {connection.klaviyo_unreachable_since}")
    for gate in connection.gates:
        if not gate.open and gate.reopens_at:
            words.append(f"{gate.endpoint}: paused by Klaviyo until {gate.reopens_at[11:19]} UTC")
    if len(words) == 1:
        words.append("no endpoint paused")
    return "<ul class=state>" + "".join(f"<li>{esc(w)}</li>" for w in words) + "</ul>"


def _backlog(name: str, status: Status) -> str:
    rows = [
        [esc(b.state), esc(b.jobs), esc("" if b.oldest_age_s is None else f"{b.oldest_age_s:.0f} s")]
        for b in status.backlog
        if b.connection == name
    ]
    return table(("state", "jobs", "oldest job age"), rows, "no jobs")


def _dead(name: str, status: Status) -> str:
    rows = [[_filter_link(name, d.reason), esc(d.jobs)] for d in status.dead_letters if d.connection == name]
    return table(("reason", "jobs"), rows, "no dead letters")


def _filter_link(connection: str, reason: str) -> str:
    query = urlencode({"connection": connection, "reason": reason})
    return f'<a href="{PREFIX}/dead-letters?{esc(query)}">{esc(reason)}</a>'


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
