"""The overview: per connection what flows in and out, what waits, what failed, what is paused.

The document is ``status``'s (service/status.py), built from the store and the service's own
counters as sampled by ``History``; ``fragment`` renders it as the HTML the page polls. Above the
connections, the cluster as ``status`` shows it: on PostgreSQL the live nodes and which node holds
each Klaviyo account's delivery lease; on SQLite, a single node (this one).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import NamedTuple
from urllib.parse import urlencode

from mparticle_klaviyo.console.history import History
from mparticle_klaviyo.console.html import PREFIX, esc, table
from mparticle_klaviyo.service.cluster import SHARED, Cluster, cluster_view
from mparticle_klaviyo.service.status import ConnectionStatus, DeadLetters, Status, build_status, dead_letters
from mparticle_klaviyo.store.async_store import AsyncJobStore
from mparticle_klaviyo.store.base import ClusterStore, JobStore

# Dead letters are counted by paging through them: at most once per this many seconds.
DEAD_CACHE_S = 5.0


class Overview:
    """Builds the status document for the console, with the dead letters and the cluster cached briefly."""

    def __init__(self, store: AsyncJobStore, history: History, connections: list[str], store_shown: str) -> None:
        self.store = store
        self.history = history
        self.connections = connections
        self.store_shown = store_shown
        self._dead: list[DeadLetters] = []
        self._cluster: Cluster | None = None
        self._read_at = float("-inf")

    async def status(self, accounts: Mapping[str, Sequence[str]] | None = None, lease_s: float = 0.0) -> Status:
        """The document now; with ``accounts`` (lease name -> connections) and the lease time, the cluster too."""
        if time.monotonic() - self._read_at > DEAD_CACHE_S:
            self._dead = await self.store.on_thread(dead_letters)
            self._cluster = None if accounts is None else await self._read_cluster(accounts, lease_s)
            self._read_at = time.monotonic()
        return build_status(
            store=self.store_shown,
            counts=await self.store.counts(),
            dead=self._dead,
            connections=self.connections,
            metrics_url="in-process",
            scrape=self.history.scrape(),
            now=time.time(),
            cluster=self._cluster,
        )

    async def _read_cluster(self, accounts: Mapping[str, Sequence[str]], lease_s: float) -> Cluster:
        """``status``'s cluster view (a SQLite store has no cluster: one node)."""

        def read(store: JobStore) -> Cluster:
            if not isinstance(store, ClusterStore):
                return Cluster()
            return cluster_view(store, accounts, lease_s, time.time())

        return await self.store.on_thread(read)


class Me(NamedTuple):
    """This process: its host, pid and its name in the lease table (``serve`` gives it)."""

    host: str
    pid: int
    node: str

    def named(self, node: str | None) -> bool:
        """Whether ``node`` is this process (not an earlier one on this host that had the same pid)."""
        return node == self.node


def this_node(node: str) -> Me:
    """This process, named ``node`` in the lease table."""
    return Me(socket.gethostname(), os.getpid(), node)


def fragment(status: Status, me: Me) -> str:
    """The live part of the overview page: one section per connection, and the cluster with ``me`` marked."""
    sections = [_connection(c, status) for c in status.connections]
    cluster = "" if status.cluster is None else cluster_section(status.cluster, me)
    return f"<p class=muted>Updated {esc(status.generated_at)}</p>{cluster}" + "".join(sections)


def cluster_section(cluster: Cluster, me: Me) -> str:
    """The nodes and who delivers for which Klaviyo account, this node marked."""
    if cluster.mode != SHARED:
        return (
            "<section class=cluster id=cluster><h2>Cluster</h2><p>Single node (SQLite store): this node"
            f" ({esc(me.host)}, pid {me.pid}) delivers for every connection.</p></section>"
        )
    return (
        f"<section class=cluster id=cluster><h2>Cluster: {len(cluster.nodes)} live node(s)</h2>"
        f"{_nodes(cluster, me)}<h3>Delivery lease per Klaviyo account</h3>{_leases(cluster, me)}</section>"
    )


def _nodes(cluster: Cluster, me: Me) -> str:
    rows = [
        [
            _node(node.node, me),
            esc(f"{node.heartbeat_age_s:.1f} s ago"),
            esc(f"{node.expires_in_s:.1f} s"),
        ]
        for node in cluster.nodes
    ]
    return table(("node", "last heartbeat", "counts as dead in"), rows, "no live node")


def _leases(cluster: Cluster, me: Me) -> str:
    rows = []
    for lease in cluster.leases:
        held = lease.node is not None and lease.expires_in_s is not None
        rows.append(
            [
                esc(", ".join(lease.connections) or "(not in this config)"),
                esc(lease.account),
                _node(lease.node, me) if held else "free: no live node holds it",
                esc(lease.epoch) if held else "",
                esc(f"{lease.expires_in_s:.1f} s") if held else "",
            ]
        )
    return table(("connections", "account", "node", "epoch", "expires in"), rows, "no account")


def _node(node: str | None, me: Me) -> str:
    return esc(node or "") + (" <b>(this node)</b>" if me.named(node) else "")


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
