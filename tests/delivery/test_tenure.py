"""Delivery leases in the running service's terms: the keeper's heartbeat, and dispatchers that
deliver only while their node holds the account's lease (two nodes on the machine's PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import closing
from functools import partial

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.delivery.dispatcher import Dispatcher
from mparticle_klaviyo.delivery.tenure import LeaseKeeper, account_key, accounts_of
from mparticle_klaviyo.klaviyo.classify import Outcome
from mparticle_klaviyo.klaviyo.client import KlaviyoClient
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.postgres import PostgresJobStore
from tests.service.e2e_helpers import (
    FAST,
    client_for,
    connection,
    custom_event,
    enqueue,
    run_async,
    start_recording_emulator,
    user_batch,
    wait_until,
)

TTL = 6.0


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingClient:
    """The real client, counting the requests this node sends."""

    def __init__(self, client: KlaviyoClient) -> None:
        self.client = client
        self.sent = 0

    async def send(self, request: KlaviyoRequest) -> Outcome:
        self.sent += 1
        return await self.client.send(request)

    async def close(self) -> None:
        await self.client.close()


def two_accounts(url: str) -> list[Connection]:
    return [connection(url, name="acme"), connection(url, name="beta", public_api_key="OTHER1")]


def test_a_lease_counts_as_lost_before_it_can_expire_in_the_database(postgres_url: str) -> None:
    async def scenario() -> None:
        clock = Clock()
        with closing(PostgresJobStore(postgres_url)) as store:
            keeper = LeaseKeeper(store, "n1", accounts_of(two_accounts("http://x")), TTL, clock=clock)
            await keeper.beat()
            assert len(keeper.held()) == 2
            clock.now += TTL * 0.8  # no heartbeat since: the database keeps it a little longer
            assert keeper.held() == {}

    run_async(scenario())


def test_a_node_that_joins_gets_its_share_within_two_heartbeats(postgres_url: str) -> None:
    async def scenario() -> None:
        with closing(PostgresJobStore(postgres_url)) as store:
            accounts = accounts_of(two_accounts("http://x"))
            first, second = (LeaseKeeper(store, node, accounts, TTL) for node in ("n1", "n2"))
            await first.beat()
            await second.beat()
            assert (len(first.held()), second.held()) == (2, {})
            await first.beat()  # two live nodes: one account each, so it gives one up
            await second.beat()
            assert len(first.held()) == len(second.held()) == 1
            assert set(first.held()) | set(second.held()) == set(accounts)

    run_async(scenario())


async def start_node(
    url: str, conn: Connection, name: str, stop: asyncio.Event
) -> tuple[LeaseKeeper, CountingClient, AsyncStore, Dispatcher]:
    """One node: its own store connections, lease keeper and dispatcher (not yet heartbeating)."""
    jobs = PostgresJobStore(url)
    store = AsyncStore(jobs)
    wake: list[Callable[[], None]] = []

    def wake_all() -> None:
        for call in wake:
            call()

    keeper = LeaseKeeper(jobs, name, accounts_of([conn]), TTL, on_change=wake_all)
    client = CountingClient(client_for(conn))
    tenure = partial(keeper.epoch, account_key(conn))
    dispatcher = Dispatcher(conn, store, client, Metrics(), FAST, tenure=tenure)
    wake.append(dispatcher.wake.set)
    asyncio.get_running_loop().create_task(dispatcher.run(stop))
    return keeper, client, store, dispatcher


def test_a_node_that_gives_up_the_lease_stops_at_once_and_the_taker_delivers_the_rest_once(postgres_url: str) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        conn = connection(emulator.url)
        stop = asyncio.Event()
        one, one_client, one_store, _ = await start_node(postgres_url, conn, "n1", stop)
        two, two_client, two_store, _ = await start_node(postgres_url, conn, "n2", stop)
        try:
            await one.beat()
            await two.beat()
            first = [user_batch(f"u{n}", [custom_event(f"m1-{n}")]) for n in range(20)]
            await enqueue(two_store, conn, first)  # ingest on the node that does not deliver
            await wait_until(lambda: _empty(one_store, conn), 10, "node 1 to deliver the first batches")
            assert two_client.sent == 0, "a node without the lease sends nothing"
            await one.give_up()
            sent_by_one = one_client.sent
            second = [user_batch(f"u{n}", [custom_event(f"m2-{n}")]) for n in range(20)]
            await enqueue(one_store, conn, second)
            await asyncio.sleep(0.5)
            assert len(emulator.unique_ids()) == 20, "no node delivers while nobody holds the lease"
            await two.beat()
            await wait_until(lambda: _empty(two_store, conn), 10, "node 2 to deliver the rest")
            assert one_client.sent == sent_by_one
            assert two_client.sent > 0
            ids = emulator.unique_ids()
            assert len(ids) == len(set(ids)) == 40
        finally:
            stop.set()
            await asyncio.sleep(0.1)
            for store, client in ((one_store, one_client), (two_store, two_client)):
                await client.close()
                await store.close()
            await emulator.close()

    run_async(scenario())


async def _empty(store: AsyncStore, conn: Connection) -> bool:
    return await store.backlog(conn.name) == 0
