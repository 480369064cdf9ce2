"""Cluster visibility: ``status`` and ``/metrics`` show the live nodes and who holds which lease."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import closing
from pathlib import Path

from mparticle_klaviyo.config import load_config
from mparticle_klaviyo.delivery.tenure import account_key
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.service.cluster import SHARED, SINGLE_NODE, Cluster, Lease, cluster_view, export, leases
from mparticle_klaviyo.service.runner import Service
from mparticle_klaviyo.store.base import JobState
from mparticle_klaviyo.store.postgres import PostgresJobStore
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.service.e2e_helpers import EVENTS_SECRET, PUBLIC_KEY, free_port, write_service_config
from tests.service.test_cli_service import NOWHERE, cli
from tests.store.helpers import new_jobs

NOW = 1_764_000_000.0
TTL = 15.0
ACCOUNTS = {"klaviyo-aaaa": ["acme"], "klaviyo-bbbb": ["beta", "beta-subs"]}


def test_expired_leases_show_as_free_and_accounts_are_named_by_their_connections() -> None:
    rows = [("klaviyo-aaaa", "n1", 3, NOW + 5), ("klaviyo-bbbb", "n2", 4, NOW - 1), ("klaviyo-cccc", "n2", 5, NOW + 9)]
    assert leases(rows, ACCOUNTS, NOW) == [
        Lease("klaviyo-aaaa", ["acme"], "n1", 3, 5.0),
        Lease("klaviyo-bbbb", ["beta", "beta-subs"], None, None, None),
        Lease("klaviyo-cccc", [], "n2", 5, 9.0),  # another node's config: named by its hash only
    ]


def test_a_sqlite_store_is_a_single_node(tmp_path: Path) -> None:
    with closing(SqliteJobStore(tmp_path / "jobs.sqlite3")) as store:
        assert cluster_view(store, ACCOUNTS, TTL, NOW) == Cluster(SINGLE_NODE, [], [])


def test_the_view_shows_each_live_node_and_the_holder_of_each_lease(postgres_url: str) -> None:
    with closing(PostgresJobStore(postgres_url)) as store:
        first = store.hold_leases("n1", ACCOUNTS, {}, NOW - 4, TTL)
        second = store.hold_leases("n2", ACCOUNTS, {}, NOW - 1, TTL)
        store.hold_leases("gone", {}, {}, NOW - 100, TTL)  # its heartbeat expired long ago
        view = cluster_view(store, ACCOUNTS, TTL, NOW)
    assert view.mode == SHARED
    assert [(node.node, node.heartbeat_age_s, node.expires_in_s) for node in view.nodes] == [
        ("n1", 4.0, 11.0),
        ("n2", 1.0, 14.0),
    ]
    # n1 took both before n2 was live; n2 finds none free until n1 gives one up at its next beat.
    assert (first, second) == ({"klaviyo-aaaa": 1, "klaviyo-bbbb": 2}, {})
    assert [(lease.connections, lease.node, lease.epoch, lease.expires_in_s) for lease in view.leases] == [
        (["acme"], "n1", 1, 11.0),
        (["beta", "beta-subs"], "n1", 2, 11.0),
    ]


def test_metrics_export_the_node_count_and_only_the_current_holders() -> None:
    metrics = Metrics()
    export(metrics, Cluster(SHARED, [], [Lease("klaviyo-aaaa", ["acme"], "n1", 3, 5.0)]))
    moved = [Lease("klaviyo-aaaa", ["acme"], "n2", 4, 9.0), Lease("klaviyo-bbbb", ["beta"], None, None, None)]
    export(metrics, Cluster(SHARED, [], moved))
    text = metrics.exposition().decode()
    assert 'mpk_account_lease_holder{connection="acme",node="n2"} 4.0' in text
    assert 'node="n1"' not in text and 'connection="beta"' not in text
    assert "mpk_cluster_nodes 0.0" in text
    export(metrics, Cluster())
    assert "mpk_cluster_nodes 1.0" in metrics.exposition().decode()


def test_each_node_exports_the_cluster_on_its_metrics(tmp_path: Path, postgres_url: str) -> None:
    config = load_config(write_service_config(tmp_path, NOWHERE, free_port(), service={"store": postgres_url}))
    service = Service(config)
    with closing(PostgresJobStore(postgres_url)) as other:
        other.hold_leases("other-node", {}, {}, time.time(), 30.0)

        async def scenario() -> str:
            assert service.leases is not None
            await service.leases.beat()
            await service._update_gauges()
            await service.store.close()
            return service.metrics.exposition().decode()

        text = asyncio.run(scenario())
    assert service.leases is not None
    assert "mpk_cluster_nodes 2.0" in text
    assert f'mpk_account_lease_holder{{connection="acme",node="{service.leases.node}"}} 1.0' in text


def _config_with_leases(tmp_path: Path, postgres_url: str) -> tuple[str, str]:
    """A config on ``postgres_url`` whose account's lease node ``n1`` holds; the config's path and the account."""
    path = write_service_config(tmp_path, NOWHERE, free_port(), service={"store": postgres_url})
    account = account_key(load_config(path).connections["acme"])
    with closing(PostgresJobStore(postgres_url)) as store:
        store.hold_leases("n1", {account: ["acme"]}, {}, time.time(), 60.0)
    return str(path), account


def test_status_json_shows_the_nodes_and_lease_holders_without_keys(tmp_path: Path, postgres_url: str) -> None:
    config, account = _config_with_leases(tmp_path, postgres_url)
    code, out, err = cli(tmp_path, "status", "--config", config, "--sample", "0", "--json")
    assert code == 0, err
    cluster = json.loads(out)["cluster"]
    assert cluster["mode"] == SHARED
    assert [node["node"] for node in cluster["nodes"]] == ["n1"]
    [lease] = cluster["leases"]
    assert (lease["account"], lease["connections"], lease["node"]) == (account, ["acme"], "n1")
    assert 55 < lease["expires_in_s"] <= 60
    assert PUBLIC_KEY not in out and EVENTS_SECRET not in out


def test_status_text_shows_the_nodes_and_lease_holders(tmp_path: Path, postgres_url: str) -> None:
    config, _ = _config_with_leases(tmp_path, postgres_url)
    code, out, err = cli(tmp_path, "status", "--config", config, "--sample", "0")
    assert code == 0, err
    assert "Nodes (1 live)" in out and "Delivery leases per Klaviyo account" in out
    held = [line for line in out.splitlines() if "n1" in line and "acme" in line]
    assert len(held) == 1, out  # the lease row: connection, account, node
    assert "single node" not in out and PUBLIC_KEY not in out


def test_status_says_single_node_on_sqlite(tmp_path: Path) -> None:
    config = str(write_service_config(tmp_path, NOWHERE, free_port()))
    SqliteJobStore(tmp_path / "jobs.sqlite3").close()  # as `serve` leaves it
    code, out, err = cli(tmp_path, "status", "--config", config, "--sample", "0")
    assert code == 0, err
    assert "cluster: single node" in out and "Nodes" not in out
    code, out, err = cli(tmp_path, "status", "--config", config, "--sample", "0", "--json")
    assert json.loads(out)["cluster"] == {"mode": SINGLE_NODE, "nodes": [], "leases": []}


def test_dlq_works_from_a_node_that_does_not_hold_the_lease(tmp_path: Path, postgres_url: str) -> None:
    config, account = _config_with_leases(tmp_path, postgres_url)
    with closing(PostgresJobStore(postgres_url)) as holder:
        [epoch] = holder.hold_leases("n1", {account: ["acme"]}, {}, time.time(), 60.0).values()
        holder.enqueue(new_jobs("k1", connection="acme"), time.time())
        [dead] = holder.claim("acme", 1, 60.0, time.time(), epoch=epoch)
        holder.bury([dead.id], "http_400", "invalid", time.time(), epoch=epoch)
    # The CLI runs as a node of its own (another port, no lease): it lists and redrives.
    code, out, err = cli(tmp_path, "dlq", "list", "--config", config)
    assert code == 0, err
    assert "http_400" in out and str(dead.id) in out
    code, out, err = cli(tmp_path, "dlq", "redrive", "--config", config, "--id", str(dead.id))
    assert code == 0, err
    assert "redrove 1 job(s)" in out
    with closing(PostgresJobStore(postgres_url)) as store:
        assert [(count.state, count.count) for count in store.counts()] == [(JobState.READY, 1)]
