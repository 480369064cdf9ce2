"""``mparticle-klaviyo serve``: ingest and delivery in one process, with a graceful shutdown.

SIGTERM or SIGINT: readiness turns false, the listener closes (in-flight requests finish),
dispatchers stop claiming, in-flight sends get ``shutdown_timeout_s`` to finish, and whatever
is still leased is released back to the queue. A kill -9 instead loses nothing either: the
restarted ``serve`` (one per SQLite store: ``OwnerLock``) releases the dead process's leases and
delivers those jobs again (Klaviyo dedups by ``unique_id``). On PostgreSQL many ``serve`` nodes
share the database: each Klaviyo account is delivered by the node holding its lease
(delivery/tenure.py); a dead node's accounts move to the others once its leases expire, and the
taker returns that node's claimed jobs to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Mapping
from functools import partial

from aiohttp import web

from mparticle_klaviyo.config import Config, Connection
from mparticle_klaviyo.delivery.clients import client_for
from mparticle_klaviyo.delivery.dispatch_options import DispatchOptions, account_lanes
from mparticle_klaviyo.delivery.dispatcher import Dispatcher
from mparticle_klaviyo.delivery.key_pause import ResumeRequests, answer_resume_requests
from mparticle_klaviyo.delivery.lane import Lane, Transport
from mparticle_klaviyo.delivery.tenure import LeaseKeeper, account_key, accounts_of, node_name
from mparticle_klaviyo.gc_tuning import tune_gc
from mparticle_klaviyo.klaviyo.classify import Outcome
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.observe.live import LiveTraffic
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.secret import Secret
from mparticle_klaviyo.server.app import INGEST, Ingest, create_app
from mparticle_klaviyo.server.http_server import ingest_runner
from mparticle_klaviyo.server.plan_pool import PlanPool, auto_workers
from mparticle_klaviyo.service.check import log_checks
from mparticle_klaviyo.service.cluster import Cluster, cluster_view
from mparticle_klaviyo.service.cluster import export as export_cluster
from mparticle_klaviyo.service.startup import serving_fields
from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.base import JobState, JobStore, LeaseStore
from mparticle_klaviyo.store.factory import locate, open_store, owner_lock, store_lanes, watch_store

log = logging.getLogger("mparticle_klaviyo.serve")
_GAUGES_EVERY_S = 5.0


class Service:
    """Everything ``serve`` runs: store, ingest app, one dispatcher per connection."""

    def __init__(self, config: Config) -> None:
        self.config = config
        service = config.service
        self.location = locate(service.store)
        self.owner = owner_lock(self.location)
        if self.owner is not None:
            self.owner.acquire()
        try:
            jobs = open_store(self.location, dedup_window_s=service.dedup_window_s)
            # Watched from the moment it is open: the files open now are the ones 202s promise.
            watch = watch_store(self.location, service.store_min_free_mb * 1024 * 1024)
            self.store = AsyncStore(jobs, watch, lanes=store_lanes(self.location))
        except BaseException:
            self.release_owner()
            raise
        self.metrics = Metrics()
        # Recent traffic for the console's Live stream: recorded only when the console is on.
        self.live = LiveTraffic() if service.console_password is not None else None
        self.metrics.store_ok.set_function(lambda: float(self.store.problem() is None))
        self.stop = asyncio.Event()
        options = DispatchOptions(
            max_attempts=service.max_attempts,
            max_age_s=service.max_age_s,
            lease_s=service.lease_s,
            max_concurrency=service.max_concurrency,
            # Held owner lock (SQLite): every lease found is a dead process's. Without one
            # (PostgreSQL), the node delivers an account while it holds the account's lease.
            sole_owner=self.owner is not None,
        )
        # This process's name in the lease table (the console marks it among the nodes).
        self.node = node_name()
        self.leases = self._lease_keeper(jobs)
        self._account_lanes: dict[tuple[str, Secret], dict[str, Lane]] = {}
        self.clients = {
            name: client_for(c, pool_size=service.max_concurrency) for name, c in config.connections.items()
        }
        self.dispatchers = {
            name: Dispatcher(
                c, self.store, self.clients[name], self.metrics, options, lanes=self._lanes(c, options),
                tenure=self._tenure(c), live=self.live,
            )
            for name, c in config.connections.items()
        }  # fmt: skip
        workers = service.ingest_workers
        self.plans = PlanPool(config.connections, auto_workers() if workers == "auto" else workers)
        self.app = create_app(config, self.store, self.metrics, self._wake, self.live, self.plans)
        self.ingest: Ingest = self.app[INGEST]
        self._exported_waits: dict[str, tuple[float, float]] = {}

    def _lanes(self, connection: Connection, options: DispatchOptions) -> dict[str, Lane]:
        """The pacing and circuit of ``connection``'s Klaviyo account, shared by every connection sending to it.

        Klaviyo's limits and Retry-After apply to the account (the public key at one URL);
        ``load_config`` has checked that such connections configure the same limits.
        """
        if connection.account not in self._account_lanes:
            self._account_lanes[connection.account] = account_lanes(connection, options)
        return self._account_lanes[connection.account]

    def _lease_keeper(self, jobs: JobStore) -> LeaseKeeper | None:
        """The keeper of this node's delivery leases, on a store many nodes share (none with an owner lock)."""
        if self.owner is not None or not isinstance(jobs, LeaseStore):
            return None
        accounts = accounts_of(self.config.connections.values())
        return LeaseKeeper(jobs, self.node, accounts, self.config.service.account_lease_s, self._wake_all)

    def _tenure(self, connection: Connection) -> Callable[[], int | None] | None:
        """What tells ``connection``'s dispatcher the epoch of this node's lease on its account."""
        return None if self.leases is None else partial(self.leases.epoch, account_key(connection))

    def _wake_all(self) -> None:
        for dispatcher in getattr(self, "dispatchers", {}).values():
            dispatcher.wake.set()

    def _wake(self, connection: str) -> None:
        dispatcher = self.dispatchers.get(connection)
        if dispatcher is not None:
            dispatcher.wake.set()

    async def run(self, ready: asyncio.Event | None = None) -> None:
        """Serve until ``self.stop`` is set, then shut down gracefully."""
        runner = ingest_runner(self.app, self.config.service)
        await self.plans.start()
        await runner.setup()
        site = web.TCPSite(runner, self.config.service.host, self.config.service.port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            # The port is taken (or not ours): give the store and its lock back before failing.
            await self._shutdown(runner, [])
            raise
        if self.leases is not None:
            # Before delivery starts, so that it starts with its share (run() beats again, and retries).
            with contextlib.suppress(Exception):
                await self.leases.beat()
        tasks = [asyncio.create_task(d.run(self.stop)) for d in self.dispatchers.values()]
        if self.leases is not None:
            tasks.append(asyncio.create_task(self.leases.run(self.stop)))
        tasks.append(asyncio.create_task(self._housekeeping()))
        tasks.append(asyncio.create_task(self._check_credentials()))
        guards = {name: d.credentials for name, d in self.dispatchers.items()}
        requests = ResumeRequests(self.location.local_name)  # from `mparticle-klaviyo resume`
        tasks.append(asyncio.create_task(answer_resume_requests(requests, guards, self.stop)))
        self.ingest.ready = True
        fields = serving_fields(self.config, self.location.shown)
        log.info("serving", extra={"url": _url(runner), **fields, "planning_workers": self.plans.running})
        if ready is not None:
            ready.set()
        try:
            await self.stop.wait()
        finally:
            await self._shutdown(runner, tasks)

    async def _shutdown(self, runner: web.AppRunner, tasks: list[asyncio.Task[None]]) -> None:
        log.info("stopping")
        self.ingest.ready = False
        self.stop.set()
        await runner.cleanup()
        await self.plans.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        timeout = self.config.service.shutdown_timeout_s
        await asyncio.gather(*(d.drain(timeout) for d in self.dispatchers.values()))
        if self.leases is not None:
            try:
                await self.leases.give_up()  # other nodes take the accounts now, not after the lease time
            except Exception:
                log.exception("could not give up the delivery leases; they expire on their own")
        for client in self.clients.values():
            await client.close()
        await self.store.close()
        self.release_owner()
        log.info("stopped")

    def release_owner(self) -> None:
        """Give up the store's owner lock, if this store kind has one (releasing twice is harmless)."""
        if self.owner is not None:
            self.owner.release()

    async def _check_credentials(self) -> None:
        """Log whether Klaviyo accepts the keys; never holds up serving (ingest is durable) or a stop."""
        # Through the accounts' limiters: a check is a request Klaviyo counts against the limit.
        paced = {
            name: _Paced(self.clients[name], self.dispatchers[name].lanes())
            for name, c in self.config.connections.items()
        }
        check = asyncio.ensure_future(log_checks(self.config.connections, paced))
        stopping = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({check, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for future in (check, stopping):
            future.cancel()
        for result in await asyncio.gather(check, stopping, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("credentials check failed", exc_info=result)

    async def _housekeeping(self) -> None:
        """Refresh backlog gauges, forget old dedup keys."""
        last_forget = 0.0
        while not self.stop.is_set():
            try:
                await self._update_gauges()
                if time.monotonic() - last_forget > 3600:
                    await self.store.forget_before(time.time() - self.config.service.dedup_window_s)
                    last_forget = time.monotonic()
            except Exception:
                # A store that fails for a while (a PostgreSQL server restarting) must not end
                # housekeeping for the life of the process: try again at the next turn.
                log.exception("housekeeping failed; trying again")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), _GAUGES_EVERY_S)

    async def _update_gauges(self) -> None:
        self.store.problem()  # look even when no request or probe asks, so that the log says when it broke
        counts = await self.store.counts()  # read first: a scrape never sees the zeroes in between
        now = time.time()
        for name in self.config.connections:
            for state in JobState:
                self.metrics.backlog.labels(name, state.name.lower()).set(0)
            # 0 with nothing ready: else the age of the last job seen would stay, and alert, forever.
            self.metrics.oldest.labels(name).set(0)
        for count in counts:
            self.metrics.backlog.labels(count.connection, count.state.name.lower()).set(count.count)
            if count.state == JobState.READY and count.oldest_created_at is not None:
                self.metrics.oldest.labels(count.connection).set(now - count.oldest_created_at)
        for name, dispatcher in self.dispatchers.items():
            self.metrics.blocked_profiles.labels(name).set(len(dispatcher.barrier))
            self.metrics.delivery_lease.labels(name).set(float(dispatcher.holds_lease()))
            self._export_waits(name, dispatcher)
        await self._export_cluster()

    async def _export_cluster(self) -> None:
        """The live nodes and lease holders on /metrics (read on a thread: the store thread stays free)."""
        if self.leases is None:
            export_cluster(self.metrics, Cluster())
            return
        keeper = self.leases
        ttl = self.config.service.account_lease_s
        cluster = await asyncio.to_thread(cluster_view, keeper.store, keeper.accounts, ttl, time.time())
        export_cluster(self.metrics, cluster)

    def _export_waits(self, name: str, dispatcher: Dispatcher) -> None:
        """Counters only go up: add what the dispatcher waited since the last export."""
        limiter, gate = dispatcher.pacing_waits()
        last_limiter, last_gate = self._exported_waits.get(name, (0.0, 0.0))
        self.metrics.limiter_wait.labels(name).inc(limiter - last_limiter)
        self.metrics.gate_wait.labels(name).inc(gate - last_gate)
        self._exported_waits[name] = (limiter, gate)


class _Paced:
    """A client whose requests first take a token from their endpoint's rate limiter."""

    def __init__(self, client: Transport, lanes: Mapping[str, Lane]) -> None:
        self._client = client
        self._lanes = lanes

    async def send(self, request: KlaviyoRequest) -> Outcome:
        """Wait for the limiter (so the check never costs a 429), then send."""
        lane = self._lanes.get(request.endpoint)
        if lane is not None:
            await lane.limiter.acquire()
        return await self._client.send(request)


def _url(runner: web.AppRunner) -> str:
    host, port = runner.addresses[0][:2]
    return f"http://{host}:{port}"


# Objects allocated (net) between young collections; CPython's default is 700.
async def serve(config: Config, mount: Callable[[Service], None] | None = None) -> None:
    """Run the service until SIGTERM or SIGINT; ``mount`` may add routes first (the console)."""
    # The store thread releases the GIL around every SQLite step; with the default 5 ms switch
    # interval each hand-back can wait that long behind the event loop (measured: enqueue ran at
    # a fraction of its speed beside a busy loop). A shorter interval keeps the two in step.
    sys.setswitchinterval(0.0005)
    service = Service(config)
    if mount is not None:
        mount(service)
    tune_gc()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, service.stop.set)
    await service.run()
