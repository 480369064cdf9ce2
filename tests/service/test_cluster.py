"""Three ``serve`` nodes on one PostgreSQL database, two Klaviyo accounts (issue 11's cluster test).

Batches go round-robin to the three nodes for both accounts; one node is killed with SIGKILL
mid-run and restarted. Every event a node answered 202 reaches the emulator and is recorded
once, and Klaviyo never answers 429: each account is paced by the one node holding its lease,
with the emulator's limits as tight as the connections' own.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest

from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig
from tests.service.e2e_helpers import (
    ServeProcess,
    custom_event,
    free_port,
    run_async,
    start_recording_emulator,
    toml,
    user_batch,
    wait_until,
)

# Tight enough that two nodes pacing one account's backlog on their own would be refused (burst
# per second, steady per minute); the connections are told the same.
LIMITS = {"POST /client/events": (30, 1800), "POST /client/subscriptions": (30, 1800)}
ACCOUNTS = {"acme": "DEMO01", "beta": "OTHER1"}
BATCHES = 90  # per account, two events each


def write_config(directory: Path, store: str, klaviyo_url: str, port: int) -> Path:
    """A node's config: its own port, the shared database, both connections."""
    service = {
        "host": "127.0.0.1",
        "port": port,
        "store": store,
        "account_lease_s": 3.0,
        "lease_s": 3.0,  # job leases: short, so that only delivery leases keep a dead node's jobs from others
        "shutdown_timeout_s": 5.0,
        "log_level": "warning",
    }
    lines = ["[service]", *(f"{k} = {toml(v)}" for k, v in service.items())]
    for name, public_key in ACCOUNTS.items():
        table: dict[str, Any] = {
            "public_api_key": public_key,
            "list_id": "LIST01",
            "klaviyo_url": klaviyo_url,
            "events_api_key": f"{name}-key",
            "events_api_secret": f"{name}-secret",
            "rate_limits": {endpoint: list(limits) for endpoint, limits in LIMITS.items()},
        }
        lines += ["", f"[connections.{name}]", *(f"{k} = {toml(v)}" for k, v in table.items())]
    path = directory / f"node-{port}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def auth(name: str) -> str:
    return "Basic " + base64.b64encode(f"{name}-key:{name}-secret".encode()).decode()


async def post(session: aiohttp.ClientSession, node: ServeProcess, name: str, batch: dict[str, Any]) -> int:
    """POST one batch to a node; its status, or 0 when the node is down."""
    try:
        async with session.post(f"{node.url}/v2/bulkevents", json=[batch], headers={"Authorization": auth(name)}) as r:
            await r.read()
            return r.status
    except (TimeoutError, aiohttp.ClientError):
        return 0


def lease_holder(store: str, nodes: list[ServeProcess]) -> ServeProcess:
    """A node that holds a live delivery lease now (lease rows name the node's pid)."""
    with psycopg.connect(store) as conn:
        rows = conn.execute("SELECT node FROM account_leases WHERE expires_at > extract(epoch FROM now())").fetchall()
    pids = {int(row[0].split("-")[-2]) for row in rows}
    holders = [node for node in nodes if node.process is not None and node.process.pid in pids]
    assert holders, f"no node holds a lease: {rows}"
    return holders[0]


async def lease_gauges(nodes: list[ServeProcess]) -> dict[str, float]:
    """``mpk_delivery_lease`` summed over the nodes' /metrics, per connection."""
    sums: dict[str, float] = {}
    async with aiohttp.ClientSession() as session:
        for node in nodes:
            async with session.get(f"{node.url}/metrics") as response:
                text = await response.text()
            for line in text.splitlines():
                if line.startswith("mpk_delivery_lease{"):
                    name = line.split('connection="', 1)[1].split('"', 1)[0]
                    sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return sums


async def cluster_views(nodes: list[ServeProcess]) -> list[tuple[float, dict[str, str]]]:
    """Per node, its /metrics' ``mpk_cluster_nodes`` and ``mpk_account_lease_holder`` (connection -> node)."""
    views = []
    async with aiohttp.ClientSession() as session:
        for node in nodes:
            async with session.get(f"{node.url}/metrics") as response:
                text = await response.text()
            count, holders = 0.0, {}
            for line in text.splitlines():
                if line.startswith("mpk_cluster_nodes "):
                    count = float(line.rsplit(" ", 1)[1])
                elif line.startswith("mpk_account_lease_holder{"):
                    name = line.split('connection="', 1)[1].split('"', 1)[0]
                    holders[name] = line.split('node="', 1)[1].split('"', 1)[0]
            views.append((count, holders))
    return views


async def send_all(nodes: list[ServeProcess], store: str, kill_at: int) -> list[str]:
    """Post every batch round-robin (a node that is down: the next one); at ``kill_at`` kill -9 a node
    that holds a lease (while the accounts have a backlog), and restart it 20 batches later.

    Returns the message ids of the events answered 202.
    """
    acked: list[str] = []
    victim = nodes[0]
    async with aiohttp.ClientSession() as session:
        for n in range(BATCHES):
            if n == kill_at:
                victim = lease_holder(store, nodes)
                await victim.kill()
            if n == kill_at + 20:
                await victim.start()
            for offset, name in enumerate(ACCOUNTS):
                ids = [f"{name}-{n}-{e}" for e in range(2)]
                batch = user_batch(f"{name}-user{n % 15}", [custom_event(uid) for uid in ids])
                for attempt in range(len(nodes)):
                    node = nodes[(n + offset + attempt) % len(nodes)]
                    if await post(session, node, name, batch) == 202:
                        acked += ids
                        break
    return acked


@pytest.mark.timeout(150)
def test_three_nodes_deliver_every_acknowledged_event_once_without_a_429_through_a_kill_9(
    tmp_path: Path, postgres_url: str
) -> None:
    async def scenario() -> None:
        config = EmulatorConfig(company_ids=frozenset(ACCOUNTS.values()), rate_limits=dict(LIMITS))
        emulator = await start_recording_emulator(config)
        nodes = []
        for index in range(3):
            port = free_port()
            path = write_config(tmp_path, postgres_url, emulator.url, port)
            nodes.append(ServeProcess(path, port, tmp_path / f"node{index}.log"))
        try:
            await asyncio.gather(*(node.start(timeout_s=30) for node in nodes))
            acked = await send_all(nodes, postgres_url, kill_at=BATCHES // 3)

            async def all_there() -> bool:
                return set(acked) <= set(emulator.unique_ids())

            await wait_until(all_there, 60, "every acknowledged event at Klaviyo")
            recorded = Counter(emulator.unique_ids())
            assert [uid for uid in acked if recorded[uid] != 1] == []
            assert len(acked) >= BATCHES * 2 * len(ACCOUNTS) * 0.9, "most posts were accepted"
            assert 429 not in emulator.statuses(), Counter(emulator.statuses())

            async def one_deliverer_each() -> bool:
                return await lease_gauges(nodes) == dict.fromkeys(ACCOUNTS, 1.0)

            await wait_until(one_deliverer_each, 20, "/metrics of the nodes to show one deliverer per account")

            running = {node.process.pid for node in nodes if node.process is not None}

            async def one_cluster_view() -> bool:
                views = await cluster_views(nodes)
                holders = views[0][1]
                # Every node sees the 3 live nodes (not the killed one) and the same live holder per account.
                return (
                    all(view == (3.0, holders) for view in views)
                    and set(holders) == set(ACCOUNTS)
                    and {int(node.split("-")[-2]) for node in holders.values()} <= running
                )

            await wait_until(one_cluster_view, 20, "/metrics of every node to show the same cluster")
        finally:
            for node in nodes:
                await node.ensure_stopped()
            await emulator.close()

    run_async(scenario(), timeout_s=140)
