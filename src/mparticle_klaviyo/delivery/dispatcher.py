"""Delivery of one connection's jobs from the store to Klaviyo.

The loop claims due jobs (leased, so a crash returns them), holds back jobs of profiles whose
earlier job is failing (``Barrier``), maps the rest with today's code, packs them into send
units, and sends each unit through its endpoint's lane (Retry-After gate, two-window limiter,
AIMD). Answers settle jobs:

* 2xx: ack (the row is deleted);
* 429: the lane's gate closes for Retry-After and the job returns to the queue due when the
  gate reopens, without counting an attempt (but past ``max_age_s`` it is dead-lettered);
* 408/5xx/timeouts/resets in isolation: retry with exponential backoff and full jitter,
  counted; past ``max_attempts`` or ``max_age_s`` the job is dead-lettered as
  ``retries_exhausted:<cause>`` or ``max_age:<cause>`` (e.g. ``retries_exhausted:http_503``);
* an outage (such failures across requests) opens the account's circuit (delivery/circuit.py):
  jobs go back uncounted, due at its next probe, and only a probe job is claimed until it closes;
* 401/403 (the key refused): the connection's delivery pauses (delivery/key_pause.py): jobs go
  back uncounted, nothing is claimed until a probe passes or an operator runs ``resume``;
* other 4xx: dead-lettered with Klaviyo's answer. In a bulk job, Klaviyo's JSON pointer names
  the bad entry: only its jobs are dead-lettered, the others go straight back to the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Mapping

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.delivery.backoff import Backoff
from mparticle_klaviyo.delivery.barrier import Barrier
from mparticle_klaviyo.delivery.circuit import Circuit, Paused
from mparticle_klaviyo.delivery.clock import MonotonicClock
from mparticle_klaviyo.delivery.dispatch_options import DispatchOptions, account_lanes
from mparticle_klaviyo.delivery.holds import Holds
from mparticle_klaviyo.delivery.key_pause import CredentialGuard
from mparticle_klaviyo.delivery.lane import Lane, Transport
from mparticle_klaviyo.delivery.observer import SettleObserver
from mparticle_klaviyo.delivery.outages import watch_gates, watch_outages
from mparticle_klaviyo.delivery.report import Tally
from mparticle_klaviyo.delivery.retry_policy import RetryPolicy
from mparticle_klaviyo.delivery.senders import BulkSenders
from mparticle_klaviyo.delivery.settle import Settler, by_epoch
from mparticle_klaviyo.delivery.timed import TimedTransport
from mparticle_klaviyo.delivery.units import MappedJob, PreparedUsers, Unit, Unmappable, build_units, map_job, now_ms
from mparticle_klaviyo.klaviyo.classify import Delivered, Outcome, Retryable, Throttled
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.observe.live import SHOWN_ITEMS, LiveTraffic, Verdict
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.store.async_store import AsyncJobStore
from mparticle_klaviyo.store.base import Job
from mparticle_klaviyo.store.errors import LeaseLostError

log = logging.getLogger("mparticle_klaviyo.delivery")
_ERROR_PAUSE_S = 1.0


# Jobs mapped between two yields to the event loop (~5 ms of CPU).
_MAP_SLICE = 50
_QUIESCE_POLL_S = 0.02


class Dispatcher:
    """Delivers one connection's queued jobs until told to stop."""

    def __init__(
        self,
        connection: Connection,
        store: AsyncJobStore,
        client: Transport,
        metrics: Metrics,
        options: DispatchOptions | None = None,
        rng: random.Random | None = None,
        lanes: Mapping[str, Lane] | None = None,
        wall_clock: Callable[[], float] = time.time,
        observer: SettleObserver | None = None,
        tenure: Callable[[], int | None] | None = None,
        live: LiveTraffic | None = None,
    ) -> None:
        self.connection = connection
        # The console's Live stream (``serve`` with its console on): each unit's requests and verdict.
        self._live = live
        # Many nodes (PostgreSQL): the epoch of this node's delivery lease on the connection's
        # account, None while another node (or none) holds it. Without: this process delivers alone.
        self._tenure = tenure
        self._epoch: int | None = None
        # Unix time for the store (due times, leases, job ages); injectable so tests can age jobs.
        self._now = wall_clock
        self.store = store
        # Counted and timed; a send also marks its unit as started (``quiesce`` lets those finish).
        self.client: Transport = TimedTransport(client, metrics, connection.name, on_send=self._note_send)
        self.metrics = metrics
        self.options = options or DispatchOptions()
        self.wake = asyncio.Event()
        # Lanes are the account's, not the connection's: connections sending to one Klaviyo
        # account must share them (``lanes``), or together they would exceed its limits.
        self._lanes = dict(lanes) if lanes is not None else account_lanes(connection, self.options)
        self.circuit = next((lane.circuit for lane in self._lanes.values()), None) or Circuit(MonotonicClock())
        watch_outages(self.circuit, connection.name, metrics)
        watch_gates(self._lanes, connection.name, metrics)
        # The connection's own (keys differ between connections of one account): a 401/403 pauses it.
        self.credentials = CredentialGuard(
            connection.name, lambda: self.client, self._lanes, metrics, self.options.credentials, wake=self.wake.set
        )
        self._backoff = Backoff(self.options.backoff_base_s, self.options.backoff_cap_s, rng)
        self.policy = RetryPolicy(
            max_attempts=self.options.max_attempts,
            max_age_s=self.options.max_age_s,
            default_retry_after_s=self.options.default_retry_after_s,
            max_retry_after_s=self.options.max_retry_after_s,
        )
        self._observer = observer
        self._quiet = False  # ``quiesce``: no unit sends its first request any more
        self._tally = Tally()
        self._users = PreparedUsers(connection)
        self._fresh_term()

    def _fresh_term(self) -> None:
        """What delivery learns while it owns the account: the barrier, and what is claimed or in flight."""
        self.barrier = Barrier()
        self.settler = Settler(
            self.connection.name, self.store, self.metrics, self.policy, self._backoff, self.barrier, self._now,
            self._observer,
        )  # fmt: skip
        self.holds = Holds(self.connection.name, self.store, self.metrics, self.settler, self._now, lambda: self._epoch)
        self.profile_order = self.holds.profile_order
        self._tasks: dict[asyncio.Task[None], tuple[Job, ...]] = {}
        self._started: set[asyncio.Task[None]] = set()  # unit tasks whose first request went out
        self._orphans: list[tuple[tuple[Job, ...], str]] = []
        self._in_flight = 0
        self._bulk = BulkSenders(
            self._lanes, lambda: self.client, self._tally, self._handle_packed, hold=self._hold_packing
        )

    def _hold_packing(self) -> bool:
        """Whether bulk senders must pack nothing more: ``quiesce``, or a lost lease."""
        return self._quiet or self._lease_lost()

    def holds_lease(self) -> bool:
        """Whether this process delivers the connection now: alone, or holding its account's lease."""
        return self._tenure is None or self._tenure() is not None

    def _lease_lost(self) -> bool:
        """Whether the account's lease is no longer the one this term's jobs were claimed under."""
        return self._tenure is not None and self._tenure() != self._epoch

    async def _change_term(self) -> None:
        """The lease moved (lost, given up, taken afresh): end this term's sends now, start anew.

        Nothing of the old term is written back: the node that takes the lease returns its jobs
        to the queue, and the store refuses writes under an epoch that is no longer current.
        """
        previous, self._epoch = self._epoch, self._tenure() if self._tenure is not None else None
        tasks = [*self._tasks, *self._bulk.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fresh_term()
        log.info(
            "delivery lease changed",
            extra={"connection": self.connection.name, "epoch": self._epoch, "previous_epoch": previous},
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then finish what is in flight (see ``drain``).

        A store error (a write lock held past the busy timeout, a full disk) pauses the loop
        instead of ending it: a dead loop would leave the connection undelivered until a restart
        while ingest kept accepting.
        """
        started = False
        last_release = time.monotonic()
        while not stop.is_set():
            if self._lease_lost():
                await self._change_term()
                started = False
            if self._tenure is not None and self._epoch is None:
                await self._idle(stop)  # another node delivers for the account, or none yet
                continue
            try:
                if not started:
                    await self._start()
                    started, last_release = True, time.monotonic()
                elif self._releases_expired() and time.monotonic() - last_release > self.options.release_every_s:
                    await self.store.release_expired(self._now())
                    last_release = time.monotonic()
                await self._retry_orphans()
                self.credentials.tick()
                claimed = await self._claim_and_start()
            except LeaseLostError as error:
                # The lease moved on before our heartbeat noticed: nothing to do until it does.
                log.info("delivery paused: %s", error, extra={"connection": self.connection.name})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _ERROR_PAUSE_S)
                continue
            except Exception:
                log.exception("delivery paused by an error", extra={"connection": self.connection.name})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _ERROR_PAUSE_S)
                continue
            if not claimed:
                await self._idle(stop)

    def _releases_expired(self) -> bool:
        """Whether expired job leases are ours to release: not as the sole owner, nor under a lease
        (taking the account's lease returned every job of an earlier term to the queue)."""
        return not self.options.sole_owner and self._tenure is None

    async def _start(self) -> None:
        # Leases a crashed process left behind first: a failed job still leased by it would be
        # missing from the rebuilt barrier, and its profile's later jobs would overtake it. As
        # the sole owner every lease is such a leftover, expired or not.
        if self._tenure is None:
            await self.store.release_expired(math.inf if self.options.sole_owner else self._now())
        await self.holds.rebuild_barrier()

    async def quiesce(self, timeout_s: float) -> None:
        """Send nothing new; wait up to ``timeout_s`` for the units already sending to settle.

        For a stop that must not send twice what Klaviyo accepted (replay's Ctrl-C): a unit whose
        first request has gone out finishes and is settled with its answers; a unit that has not
        sent goes back to the queue (not an attempt), and ``drain`` releases what still waits.
        """
        self._quiet = True
        deadline = time.monotonic() + timeout_s
        while (self._started or self._bulk.sending()) and time.monotonic() < deadline:
            await asyncio.sleep(_QUIESCE_POLL_S)

    def _note_send(self) -> None:
        """A request goes out: if from a unit's task, that unit has started (``quiesce`` waits for it)."""
        task = asyncio.current_task()
        if task is not None and task in self._tasks:
            self._started.add(task)

    def _hold_first(self) -> bool:
        """Whether a unit's first request must not go: refused credentials, ``quiesce``, or a lost lease."""
        return self._quiet or self._hold_next()

    def _hold_next(self) -> bool:
        """Whether a unit's next request must not go: refused credentials, or a lost lease."""
        return self.credentials.paused() or self._lease_lost()

    async def drain(self, timeout_s: float) -> None:
        """Wait for in-flight units; release the jobs of those still running after ``timeout_s``.

        Jobs waiting to be packed into a bulk request are released at once: nothing was sent.
        """
        await self.credentials.close()
        tasks = [*self._tasks, *self._bulk.tasks]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout_s)
        # Taken with no await before the cancels below, so no unit settles in between.
        leftover = [job for task, jobs in self._tasks.items() if not task.done() for job in jobs]
        leftover += self._bulk.unsettled()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for epoch, ids in by_epoch(leftover).items():
            await self.store.release(ids, epoch=epoch)

    async def _idle(self, stop: asyncio.Event) -> None:
        """Sleep until woken (new jobs), a unit finishes, or the poll interval passes."""
        self.wake.clear()
        waiters: set[asyncio.Future[object]] = {asyncio.ensure_future(self.wake.wait())}
        waiters.add(asyncio.ensure_future(stop.wait()))
        waiters.update(self._tasks)  # type: ignore[arg-type]
        _, pending = await asyncio.wait(waiters, timeout=self.options.poll_s, return_when=asyncio.FIRST_COMPLETED)
        for waiter in pending:
            if waiter not in self._tasks:
                waiter.cancel()

    async def _claim_and_start(self) -> int:
        """Claim what fits in the in-flight window and start sending it; how many were claimed."""
        limit = min(self.options.max_in_flight_jobs - self._in_flight, self.options.claim_batch)
        if self._quiet or limit <= 0 or (limit < self.options.claim_batch and self._in_flight):
            return 0  # wait for room for a whole claim: small claims make small bulk jobs
        # While Klaviyo is unreachable: nothing, or the one job whose request will probe it.
        if (limit := self.credentials.allowance(self.circuit.allowance(limit))) == 0:
            return 0
        jobs = await self.store.claim(self.connection.name, limit, self.options.lease_s, self._now(), epoch=self._epoch)
        if not jobs:
            return 0
        sendable = await self.holds.blocked(await self.holds.erasures(jobs))
        mapped = await self.holds.by_profile(await self._map(sendable))
        if self.connection.server_mode:
            # Bulk requests are packed when their lane lets one go, from what waits then.
            alone = [m for m in mapped if not self._bulk.add(m)]
            self._in_flight += len(mapped) - len(alone)
            mapped = alone
            self._bulk.start()
        for unit in build_units(mapped, self.connection.server_mode):
            self._in_flight += len(unit.jobs)
            task = asyncio.create_task(self._send_unit(unit))
            self._tasks[task] = unit.jobs
            task.add_done_callback(self._finished)
        return len(jobs)

    async def _handle_packed(self, unit: Unit, first: Outcome | Paused) -> None:
        """Settle a bulk request a sender packed and sent; an error of ours retries its jobs."""
        try:
            await self._send_unit(unit, first)
        except Exception as error:
            self._orphan(unit.jobs, error)
        finally:
            self._in_flight -= len(unit.jobs)
            self.profile_order.settled(unit.jobs)
            self.wake.set()

    def _finished(self, task: asyncio.Task[None]) -> None:
        jobs = self._tasks.pop(task, ())
        self._started.discard(task)
        self._in_flight -= len(jobs)
        self.profile_order.settled(jobs)
        self.wake.set()
        if not task.cancelled() and (error := task.exception()) is not None:
            self._orphan(jobs, error)

    def _orphan(self, jobs: tuple[Job, ...], error: BaseException) -> None:
        """A unit ended in an error of ours, not Klaviyo's answer (that is settled inside the unit).

        E.g. the ack's write failed: the jobs are retried as after a failure (see _retry_orphans).
        A write refused because the lease moved on leaves them to the lease's new owner.
        """
        if isinstance(error, LeaseLostError):
            log.info("a send unit's jobs are left to the new lease owner", extra={"connection": self.connection.name})
            return
        log.error("a send unit failed", exc_info=error, extra={"connection": self.connection.name})
        self._orphans.append((jobs, type(error).__name__))

    async def _retry_orphans(self) -> None:
        """Retry the jobs of units that ended in an error, counting an attempt, with backoff.

        As the sole owner nothing else would ever return them: their leases are never expired
        while this process lives. Counted as attempts so that a lasting bug ends in the dead
        letters instead of a loop. Dropped from the list only once the write succeeded.
        """
        while self._orphans:
            jobs, error = self._orphans[0]
            await self.settler.retry(list(jobs), Retryable(reason="internal_error", detail=error))
            self._orphans.pop(0)

    async def _map(self, jobs: list[Job]) -> list[MappedJob]:
        """Map claimed jobs; what no longer maps goes to the dead letters at once."""
        mapped: list[MappedJob] = []
        stamp = now_ms()
        for n, job in enumerate(jobs, start=1):
            if n % _MAP_SLICE == 0:
                # Mapping a 1000-job claim takes ~100 ms of CPU: let ingest requests in between.
                await asyncio.sleep(0)
            result = map_job(job, self.connection, stamp, self._users)
            if isinstance(result, Unmappable):
                verdict = await self.settler.bury([job], result.reason, result.detail)
                self._record((), (job,), verdict._replace(outcome="dropped"))
            else:
                mapped.append(result)
        return mapped

    async def _send_unit(self, unit: Unit, first: Outcome | Paused | None = None) -> None:
        """Send a unit's requests in order (see ``_send_requests``); note them for the Live stream."""
        verdict, tried = await self._send_requests(unit, first)
        self._record(unit.requests[:tried], unit.jobs, verdict)

    def _record(self, requests: tuple[KlaviyoRequest, ...], jobs: tuple[Job, ...], verdict: Verdict) -> None:
        """Requests sent and the verdict on their jobs into the Live stream, when the console is on."""
        if self._live is None:
            return
        self._live.request_out(
            connection=self.connection.name,
            requests=requests,
            inputs=[(job.id, job.kind, job.payload) for job in jobs[:SHOWN_ITEMS]],
            jobs=len(jobs),
            profiles=len({job.profile_key for job in jobs}),
            verdict=verdict,
        )

    async def _send_requests(self, unit: Unit, first: Outcome | Paused | None) -> tuple[Verdict, int]:
        """Send a unit's requests in order; the first answer that is not a success settles it.

        ``first``: the answer to its first request, when a bulk sender already sent it. Returns
        the verdict on the unit's jobs and how many of its requests were tried.
        """
        outcome: Outcome = Delivered(status=202)
        tried = 0
        for index, request in enumerate(unit.requests):
            tried = index + 1
            lane = self._lanes.get(request.endpoint)
            if lane is None:
                return await self.settler.bury(list(unit.jobs), "unknown_endpoint", request.endpoint), index
            if index == 0 and first is not None:
                sent = first
            else:
                # A unit claimed before a 401/403 is not sent after it; nor one not started at a quiesce.
                hold = self._hold_first if index == 0 else self._hold_next
                sent = await lane.try_send(self.client, request, self._tally, unit.jobs[0].id, hold)
            if self.credentials.stops(request.endpoint, sent):
                # Not an attempt. Due at once, yet not claimed while paused: a resume sends it at once.
                return await self.settler.postpone(unit.jobs, 0.0, self.credentials.cause()), tried
            if isinstance(sent, Paused):
                cause = f"klaviyo_unreachable: {sent.reason}"
                return await self.settler.postpone(unit.jobs, sent.retry_in_s, cause), tried
            outcome = sent
            if isinstance(outcome, Throttled):
                self.metrics.throttled.labels(self.connection.name, request.endpoint).inc()
                lane.gate.close_for(self.policy.gate_seconds(outcome))
                return await self.settler.postpone(unit.jobs, lane.gate.remaining(), "throttled (429)"), tried
            if not isinstance(outcome, Delivered):
                break
        return await self.settler.settle(unit, outcome), tried

    def busy(self) -> bool:
        """Whether anything claimed is still waiting or being sent (tests wait for idleness)."""
        return bool(self._tasks or self._bulk.tasks or self._bulk.waiting())

    def pacing_waits(self) -> tuple[float, float]:
        """Seconds spent so far waiting for the rate limiter and for closed Retry-After gates."""
        return self._tally.limiter_wait_s, self._tally.gate_wait_s

    def lanes(self) -> Mapping[str, Lane]:
        """The lanes by endpoint (for metrics and tests)."""
        return self._lanes
