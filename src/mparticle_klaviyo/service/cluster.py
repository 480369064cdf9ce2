"""The cluster as the store sees it: live nodes and which node holds which account's delivery lease.

Read by ``status`` (any node, or a machine with the config) and exported on every node's
``/metrics``. An account is named by its lease name (a hash of its URL and key, never the key)
and by the connections sending to it. A SQLite store is one node: nothing to read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.store.base import ClusterStore

SINGLE_NODE = "single node"
SHARED = "shared database"


class Node(msgspec.Struct, frozen=True):
    """A live node: seconds since its last heartbeat, and until it counts as dead."""

    node: str
    heartbeat_age_s: float
    expires_in_s: float


class Lease(msgspec.Struct, frozen=True):
    """One Klaviyo account's delivery lease; ``node`` None while no live node holds it."""

    account: str
    connections: list[str]
    node: str | None
    epoch: int | None
    expires_in_s: float | None


class Cluster(msgspec.Struct, frozen=True):
    """``single node`` (SQLite: no leases), or the nodes and leases of a shared database."""

    mode: str = SINGLE_NODE
    nodes: list[Node] = msgspec.field(default_factory=list)
    leases: list[Lease] = msgspec.field(default_factory=list)


def cluster_view(store: object, accounts: Mapping[str, Sequence[str]], ttl_s: float, now: float) -> Cluster:
    """The cluster at ``now``; ``accounts``: lease name -> connections, ``ttl_s``: the lease time."""
    if not isinstance(store, ClusterStore):
        return Cluster()
    # A heartbeat sets expires_at = now + ttl, so the last one was ttl before it ends.
    live = store.live_nodes(now)
    nodes = [Node(node, round(now - (until - ttl_s), 3), round(until - now, 3)) for node, until in live]
    return Cluster(SHARED, nodes, leases(store.lease_holders(), accounts, now))


def leases(
    rows: Sequence[tuple[str, str, int, float]], accounts: Mapping[str, Sequence[str]], now: float
) -> list[Lease]:
    """Each account's lease (configured accounts and those in the table), expired ones as unheld."""
    held = {account: (node, epoch, until) for account, node, epoch, until in rows if until > now}
    found = []
    for account in sorted(set(accounts) | {row[0] for row in rows}):
        connections = sorted(accounts.get(account, []))
        if account in held:
            node, epoch, until = held[account]
            found.append(Lease(account, connections, node, epoch, round(until - now, 3)))
        else:
            found.append(Lease(account, connections, None, None, None))
    return found


def export(metrics: Metrics, cluster: Cluster) -> None:
    """Set ``mpk_cluster_nodes`` and ``mpk_account_lease_holder`` (one series per held lease and connection)."""
    metrics.cluster_nodes.set(len(cluster.nodes) if cluster.mode == SHARED else 1)
    # Holders move between nodes: drop the old series, else a moved lease would show two holders.
    metrics.lease_holder.clear()
    for lease in cluster.leases:
        if lease.node is None:
            continue
        for connection in lease.connections or [lease.account]:
            metrics.lease_holder.labels(connection, lease.node).set(lease.epoch or 0)
