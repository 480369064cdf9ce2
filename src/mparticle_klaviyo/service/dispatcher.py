"""Delivery of one connection's jobs from the store to Klaviyo.

The loop claims due jobs (leased, so a crash returns them), holds back jobs of profiles whose
earlier job is failing (``Barrier``), maps the rest with today's code, packs them into send
units, and sends each unit through its endpoint's lane (Retry-After gate, two-window limiter,
AIMD). Answers settle jobs:

* 2xx: ack (the row is deleted);
* 429: the lane's gate closes for Retry-After and the job returns to the queue due when the
  gate reopens, without counting an attempt (but past ``max_age_s`` it is dead-lettered);
* 408/5xx/timeouts/resets in isolation: retry with exponential backoff and full jitter,
  counted; past ``max_attempts`` or ``max_age_s`` the job is dead-lettered as ``retries_exhausted``;
* an outage (such failures across requests) opens the account's circuit (delivery/circuit.py):
  jobs go back uncounted, due at its next probe, and only a probe job is claimed until it closes;
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
from collections import deque
from collections.abc import Mapping

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.delivery.backoff import Backoff
from mparticle_klaviyo.delivery.barrier import Barrier
from mparticle_klaviyo.delivery.circuit import Circuit, CircuitOptions, Paused
from mparticle_klaviyo.delivery.clock import MonotonicClock
from mparticle_klaviyo.delivery.lane import Lane, Transport
from mparticle_klaviyo.delivery.report import Tally
from mparticle_klaviyo.klaviyo.classify import Delivered, Outcome, Permanent, Retryable, Throttled
from mparticle_klaviyo.service.metrics import Metrics, watch_outages
from mparticle_klaviyo.service.units import Mapped, Unit, Unmappable, build_units, culprits, map_job, now_ms
from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.base import Job

log = logging.getLogger("mparticle_klaviyo.delivery")
_ERROR_PAUSE_S = 1.0


# A bulk job this full is sent even when more jobs wait to be packed (90% of Klaviyo's 1000).
FULL_BULK_EVENTS = 900
# Jobs mapped between two yields to the event loop (~5 ms of CPU).
_MAP_SLICE = 50


class DispatchOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Knobs of delivery."""

    claim_batch: int = 1000
    max_in_flight_jobs: int = 4000
    lease_s: float = 120.0
    poll_s: float = 0.25
    max_attempts: int = 8
    max_age_s: float = 7 * 86400
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 600.0
    default_retry_after_s: float = 1.0
    max_retry_after_s: float = 600.0
    release_every_s: float = 10.0
    max_concurrency: int = 64
    # True when this process is known to be the store's only deliverer (``serve`` holds the
    # store's OwnerLock): every lease found at start is a dead process's and is released at
    # once, and leases never expire while it runs (a unit waiting long in the limiter's queue
    # is not claimed and sent a second time). Otherwise expired leases are released every
    # ``release_every_s``.
    sole_owner: bool = False
    # When the account's circuit opens (Klaviyo unreachable) and how often it probes.
    circuit: CircuitOptions = msgspec.field(default_factory=CircuitOptions)


def account_lanes(connection: Connection, options: DispatchOptions) -> dict[str, Lane]:
    """One lane (Retry-After gate, two-window limiter, AIMD) per rate-limited endpoint of an account."""
    clock = MonotonicClock()
    circuit = Circuit(clock, options.circuit)  # one per account: an outage is the account's, not an endpoint's
    return {
        endpoint: Lane(limit, clock, max_concurrency=options.max_concurrency, circuit=circuit)
        for endpoint, limit in connection.rate_limits.items()
    }


class Dispatcher:
    """Delivers one connection's queued jobs until told to stop."""

    def __init__(
        self,
        connection: Connection,
        store: AsyncStore,
        client: Transport,
        metrics: Metrics,
        options: DispatchOptions | None = None,
        rng: random.Random | None = None,
        lanes: Mapping[str, Lane] | None = None,
    ) -> None:
        self.connection = connection
        self.store = store
        self.client = client
        self.metrics = metrics
        self.options = options or DispatchOptions()
        self.barrier = Barrier()
        self.wake = asyncio.Event()
        # Lanes are the account's, not the connection's: connections sending to one Klaviyo
        # account must share them (``lanes``), or together they would exceed its limits.
        self._lanes = dict(lanes) if lanes is not None else account_lanes(connection, self.options)
        self.circuit = next((lane.circuit for lane in self._lanes.values()), None) or Circuit(MonotonicClock())
        watch_outages(self.circuit, connection.name, metrics)
        self._backoff = Backoff(self.options.backoff_base_s, self.options.backoff_cap_s, rng)
        self._blocker_due: dict[int, float] = {}
        self._tasks: dict[asyncio.Task[None], tuple[Job, ...]] = {}
        self._orphans: list[tuple[tuple[Job, ...], str]] = []
        self._in_flight = 0
        self._tally = Tally()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set, then finish what is in flight (see ``drain``).

        A store error (a write lock held past the busy timeout, a full disk) pauses the loop
        instead of ending it: a dead loop would leave the connection undelivered until a restart
        while ingest kept accepting.
        """
        started = False
        last_release = time.monotonic()
        while not stop.is_set():
            try:
                if not started:
                    await self._start()
                    started, last_release = True, time.monotonic()
                elif not self.options.sole_owner and time.monotonic() - last_release > self.options.release_every_s:
                    await self.store.release_expired(time.time())
                    last_release = time.monotonic()
                await self._retry_orphans()
                claimed = await self._claim_and_start()
            except Exception:
                log.exception("delivery paused by an error", extra={"connection": self.connection.name})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), _ERROR_PAUSE_S)
                continue
            if not claimed:
                await self._idle(stop)

    async def _start(self) -> None:
        # Leases a crashed process left behind first: a failed job still leased by it would be
        # missing from the rebuilt barrier, and its profile's later jobs would overtake it. As
        # the sole owner every lease is such a leftover, expired or not.
        await self.store.release_expired(math.inf if self.options.sole_owner else time.time())
        await self._rebuild_barrier()

    async def drain(self, timeout_s: float) -> None:
        """Wait for in-flight units; release the jobs of those still running after ``timeout_s``."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
        leftover = [job.id for task, jobs in self._tasks.items() if not task.done() for job in jobs]
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if leftover:
            await self.store.release(leftover)

    async def _rebuild_barrier(self) -> None:
        """After a restart, profiles with failing jobs are blocked again, as before the crash."""
        for job in await self.store.failing_jobs(self.connection.name):
            self.barrier.failed(job.profile_key, job.id)
            self._blocker_due[job.id] = job.run_at

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
        if limit <= 0 or (limit < self.options.claim_batch and self._in_flight):
            return 0  # wait for room for a whole claim: small claims make small bulk jobs
        # While Klaviyo is unreachable: nothing, or the one job whose request will probe it.
        if (limit := self.circuit.allowance(limit)) == 0:
            return 0
        jobs = await self.store.claim(self.connection.name, limit, self.options.lease_s, time.time())
        if not jobs:
            return 0
        sendable = await self._hold_back_blocked(jobs)
        mapped = await self._map(sendable)
        # On the event loop, not in a worker thread: a packing thread cut the loop's long steps
        # but, competing for the GIL, sent the p99 at a steady half load to 500-800 ms in 2 runs
        # of 3 (BENCHMARKS.md, a5c2eaa).
        units = build_units(mapped, self.connection.server_mode)
        if self.connection.server_mode and len(jobs) == limit:
            units = await self._defer_partial_bulk(units)
        for unit in units:
            self._in_flight += len(unit.jobs)
            task = asyncio.create_task(self._send_unit(unit))
            self._tasks[task] = unit.jobs
            task.add_done_callback(self._finished)
        return len(jobs)

    async def _defer_partial_bulk(self, units: list[Unit]) -> list[Unit]:
        """With more jobs waiting, a part-filled last bulk job goes back to fill up next round.

        Bulk jobs are what Klaviyo limits (150 a minute), not events: each must carry as many
        events as it can. The first bulk job of a round is always sent, so this cannot stall.
        """
        bulk = [u for u in units if u.requests[0].kind == "event_bulk"]
        if len(bulk) < 2 or len(bulk[-1].requests[0].event_keys) >= FULL_BULK_EVENTS:
            return units
        await self.store.release([job.id for job in bulk[-1].jobs])
        return [u for u in units if u is not bulk[-1]]

    def _finished(self, task: asyncio.Task[None]) -> None:
        jobs = self._tasks.pop(task, ())
        self._in_flight -= len(jobs)
        self.wake.set()
        if not task.cancelled() and (error := task.exception()) is not None:
            # Not Klaviyo's answer (that is settled inside the unit) but an error of ours, e.g. the
            # ack's write failing: the jobs are retried as after a failure (see _retry_orphans).
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
            await self._retry(list(jobs), Retryable(reason="internal_error", detail=error))
            self._orphans.pop(0)

    async def _hold_back_blocked(self, jobs: list[Job]) -> list[Job]:
        """Jobs behind a failing job of their profile go back, due after that job's retry.

        When a profile's blocker is retried, its next failed jobs go with it as long as each is
        the next one in id order (in one bulk request in server mode); holding each until the one
        before succeeded would drain a busy profile at one job per hold.
        """
        sendable: list[Job] = []
        held: dict[float, list[int]] = {}
        retrying: dict[str, deque[int]] = {}  # profile -> its failed jobs after those retried now
        now = time.time()
        for job in jobs:  # in id order
            key = job.profile_key
            if self.barrier.may_send(key, job.id):
                sendable.append(job)
                if self.barrier.blocker(key) == job.id:
                    retrying[key] = deque(self.barrier.failing(key)[1:])
            elif (after := retrying.get(key)) and after[0] == job.id:
                after.popleft()
                sendable.append(job)
            else:
                retrying.pop(key, None)  # a gap: the rest waits for the jobs before it
                blocker = self.barrier.blocker(key)
                due = max(now + 0.5, self._blocker_due.get(blocker or job.id, now) + 0.1)
                held.setdefault(due, []).append(job.id)
        for due, ids in held.items():  # one write per blocker, not one per held job
            await self.store.retry(ids, due, "held: an earlier job of this profile is being retried", False)
        return sendable

    async def _map(self, jobs: list[Job]) -> list[Mapped]:
        """Map claimed jobs; what no longer maps goes to the dead letters at once."""
        mapped: list[Mapped] = []
        stamp = now_ms()
        for n, job in enumerate(jobs, start=1):
            if n % _MAP_SLICE == 0:
                # Mapping a 1000-job claim takes ~100 ms of CPU: let ingest requests in between.
                await asyncio.sleep(0)
            result = map_job(job, self.connection, stamp)
            if isinstance(result, Unmappable):
                await self._bury([job], result.reason, result.detail)
            else:
                mapped.append(result)
        return mapped

    async def _send_unit(self, unit: Unit) -> None:
        """Send a unit's requests in order; the first answer that is not a success settles it."""
        outcome: Outcome = Delivered(status=202)
        for request in unit.requests:
            lane = self._lanes.get(request.endpoint)
            if lane is None:
                await self._bury(list(unit.jobs), "unknown_endpoint", request.endpoint)
                return
            started = time.monotonic()
            sent = await lane.try_send(self.client, request, self._tally, unit.jobs[0].id)
            if isinstance(sent, Paused):
                await self._postpone(unit.jobs, sent.retry_in_s, f"klaviyo_unreachable: {sent.reason}")
                return
            outcome = sent
            self.metrics.klaviyo_latency.labels(request.endpoint).observe(time.monotonic() - started)
            if isinstance(outcome, Throttled):
                self.metrics.throttled.labels(self.connection.name, request.endpoint).inc()
                lane.gate.close_for(self._gate_seconds(outcome))
                await self._postpone(unit.jobs, lane.gate.remaining(), "throttled (429)")
                return
            if not isinstance(outcome, Delivered):
                break
        await self._settle(unit, outcome)

    async def _settle(self, unit: Unit, outcome: Outcome) -> None:
        jobs = list(unit.jobs)
        if isinstance(outcome, Delivered):
            await self.store.ack([job.id for job in jobs])
            for job in jobs:
                self._done(job)
                self.metrics.delivered.labels(self.connection.name, job.kind).inc()
        elif isinstance(outcome, Permanent):
            await self._permanent(unit, outcome)
        elif isinstance(outcome, Retryable):
            await self._retry(jobs, outcome)

    async def _postpone(self, unit_jobs: tuple[Job, ...], wait_s: float, error: str) -> None:
        """A 429 or an outage: back in the queue, due in ``wait_s``; not an attempt, but neither
        stops the clock: a job still throttled or paused past ``max_age_s`` is dead-lettered."""
        now = time.time()
        due = now + wait_s
        expired = [job for job in unit_jobs if now - job.created_at > self.options.max_age_s]
        if expired:
            await self._bury(expired, "retries_exhausted", f"{error} past max_age_s")
        jobs = [job for job in unit_jobs if job not in expired]
        if not jobs:
            return
        await self.store.retry([job.id for job in jobs], due, error, False)
        for job in jobs:
            self._blocked(job, due)

    async def _retry(self, jobs: list[Job], outcome: Retryable) -> None:
        """A transient failure: try again later, or give up past the attempt and age limits."""
        now = time.time()
        error = f"{outcome.reason} {outcome.detail}".strip()
        exhausted = [
            j
            for j in jobs
            if j.attempts + 1 >= self.options.max_attempts or now - j.created_at > self.options.max_age_s
        ]
        if exhausted:
            await self._bury(exhausted, "retries_exhausted", error)
        gone = {j.id for j in exhausted}
        again = [j for j in jobs if j.id not in gone]
        if not again:
            return
        # A unit's jobs failed together and are retried together: one delay, one write (a 503 on
        # a 1000-job bulk request is not 1000 transactions, and its jobs stay in one request).
        due = now + self._backoff.delay(max(j.attempts for j in again))
        await self.store.retry([j.id for j in again], due, error, True)
        for job in again:
            self._blocked(job, due)
        self.metrics.retried.labels(self.connection.name, outcome.reason).inc(len(again))

    async def _permanent(self, unit: Unit, outcome: Permanent) -> None:
        """Dead-letter the jobs Klaviyo refused; in a bulk job only the entry its pointer names."""
        refused = culprits(unit, outcome.pointer)
        reason = f"http_{outcome.status}" if outcome.status else outcome.reason
        # error_summary already names the pointer in the detail; add it only when it does not.
        where = f" (at {outcome.pointer})" if outcome.pointer and outcome.pointer not in outcome.detail else ""
        detail = f"{outcome.reason}: {outcome.detail}{where}"
        await self._bury(refused, reason, detail)
        buried = {job.id for job in refused}
        innocent = [job for job in unit.jobs if job.id not in buried]
        if innocent:
            # Sent with a bad neighbour; not their fault, so no attempt is counted.
            await self.store.retry(
                [job.id for job in innocent], time.time(), "resend without a rejected neighbour", False
            )

    async def _bury(self, jobs: list[Job], reason: str, detail: str) -> None:
        await self.store.bury([job.id for job in jobs], reason, detail, time.time())
        # Ids and the reason code only: the detail quotes Klaviyo's answer, which may echo data.
        ids = [job.id for job in jobs]
        log.warning("dead-lettered", extra={"connection": self.connection.name, "reason": reason, "job_ids": ids})
        for job in jobs:
            self._done(job)
            self.metrics.dead.labels(self.connection.name, reason.split(":")[0]).inc()

    def _blocked(self, job: Job, due: float) -> None:
        self.barrier.failed(job.profile_key, job.id)
        self._blocker_due[job.id] = due

    def _done(self, job: Job) -> None:
        self.barrier.done(job.profile_key, job.id)
        self._blocker_due.pop(job.id, None)

    def _gate_seconds(self, outcome: Throttled) -> float:
        seconds = self.options.default_retry_after_s if outcome.retry_after is None else outcome.retry_after
        return min(seconds, self.options.max_retry_after_s)

    def pacing_waits(self) -> tuple[float, float]:
        """Seconds spent so far waiting for the rate limiter and for closed Retry-After gates."""
        return self._tally.limiter_wait_s, self._tally.gate_wait_s

    def lanes(self) -> Mapping[str, Lane]:
        """The lanes by endpoint (for metrics and tests)."""
        return self._lanes
