"""The overview's HTML fragment, from the status document; the cluster as ``status`` sees it."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

from mparticle_klaviyo.console.history import History
from mparticle_klaviyo.console.overview import Me, Overview, fragment, this_node
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.service.status import (
    Backlog,
    ConnectionStatus,
    Credentials,
    DeadLetters,
    Gate,
    Service,
    Status,
)
from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.base import JobStore
from mparticle_klaviyo.store.postgres import PostgresJobStore
from mparticle_klaviyo.store.sqlite import SqliteJobStore


def status(**connection: object) -> Status:
    fields: dict[str, object] = {
        "name": "acme",
        "totals": {"events_received": 7},
        "rates_per_s": {"events_received": 1.5},
        "credentials": Credentials("ok"),
        "klaviyo_unreachable_since": None,
        "gates": [],
        **connection,
    }
    return Status(
        generated_at="2026-01-31T12:00:00Z",
        store="jobs.sqlite3",
        backlog=[Backlog("acme", "ready", 3, 42.0)],
        dead_letters=[DeadLetters("acme", "http_400", 2)],
        service=Service("in-process", True, 2.0),
        connections=[ConnectionStatus(**fields)],  # type: ignore[arg-type]
    )


def test_a_closed_gate_reads_paused_by_klaviyo_until_its_time() -> None:
    gate = Gate("POST /client/events", False, 31.0, "2026-01-31T12:04:31Z")
    assert "POST /client/events: paused by Klaviyo until 12:04:31 UTC" in fragment(status(gates=[gate]), ME)


def test_open_gates_say_nothing_is_paused() -> None:
    assert "no endpoint paused" in fragment(status(gates=[Gate("POST /client/events", True, 0.0, None)]), ME)


def test_rates_totals_backlog_age_and_dead_letters_by_reason_are_shown() -> None:
    html = fragment(status(), ME)
    assert "<b>1.5</b>" in html
    assert "<b>7</b>" in html
    assert "<td>ready</td><td>3</td><td>42 s</td>" in html
    assert 'href="/console/dead-letters?connection=acme&amp;reason=http_400"' in html


def test_paused_credentials_say_what_klaviyo_answered() -> None:
    credentials = Credentials("paused", "2026-01-31T11:00:00Z", "POST /client/events", "401", "not_authenticated")
    assert "Credentials: paused (Klaviyo answered 401 on POST /client/events)" in fragment(
        status(credentials=credentials), ME
    )


def test_names_are_escaped() -> None:
    assert "<script>" not in fragment(status(name="<script>"), ME)


ME = this_node("vm-1-a1b2c3")
ACCOUNTS = {"klaviyo-aaaa": ["acme"], "klaviyo-bbbb": ["beta", "beta-subs"]}
TTL = 15.0


def overview_of(store: JobStore, me: Me) -> str:
    """The overview's live fragment over ``store``, with the cluster of ``ACCOUNTS``, as node ``me`` sees it."""

    async def read() -> str:
        shared = AsyncStore(store)
        try:
            overview = Overview(shared, History(Metrics()), ["acme", "beta", "beta-subs"], "the store")
            return fragment(await overview.status(ACCOUNTS, TTL), me)
        finally:
            await shared.close()

    return asyncio.run(read())


def test_a_sqlite_store_shows_a_single_node_this_one(tmp_path: Path) -> None:
    me = this_node("vm-1-a1b2c3")
    text = overview_of(SqliteJobStore(tmp_path / "jobs.sqlite3"), me)
    assert f"Single node (SQLite store): this node ({me.host}, pid {me.pid})" in text


def test_postgresql_shows_the_live_nodes_and_which_holds_each_accounts_lease(postgres_url: str) -> None:
    store, now = PostgresJobStore(postgres_url), time.time()
    mine, other = f"{socket.gethostname()}-{os.getpid()}-a1b2c3", "other-host-4242-d4e5f6"
    # An earlier process on this host whose pid this one reuses: not this node.
    earlier = f"{socket.gethostname()}-{os.getpid()}-ffffff"
    # Each node configured for one account: each takes its own lease.
    store.hold_leases(mine, {"klaviyo-aaaa": ["acme"]}, {}, now - 2, TTL)
    store.hold_leases(other, {"klaviyo-bbbb": ["beta", "beta-subs"]}, {}, now - 1, TTL)
    store.hold_leases(earlier, {}, {}, now - 3, TTL)
    store.hold_leases("gone-1-000000", {}, {}, now - 100, TTL)  # its heartbeat expired long ago
    text = overview_of(store, this_node(mine))
    assert "Cluster: 3 live node(s)" in text
    assert f"<td>{mine} <b>(this node)</b></td>" in text and f"<td>{other}</td>" in text
    assert f"<td>{earlier}</td>" in text
    assert "gone-1-000000" not in text
    rows = text.partition("Delivery lease per Klaviyo account")[2].split("<tr>")[2:]
    assert rows[0].startswith(f"<td>acme</td><td>klaviyo-aaaa</td><td>{mine} <b>(this node)</b></td>")
    assert rows[1].startswith(f"<td>beta, beta-subs</td><td>klaviyo-bbbb</td><td>{other}</td>")


def test_a_lease_no_live_node_holds_is_shown_free(postgres_url: str) -> None:
    store, now = PostgresJobStore(postgres_url), time.time()
    store.hold_leases("gone-1-000000", ACCOUNTS, {}, now - 100, TTL)
    text = overview_of(store, this_node("vm-1-a1b2c3"))
    assert "Cluster: 0 live node(s)" in text and "no live node" in text
    assert text.count("free: no live node holds it") == 2
