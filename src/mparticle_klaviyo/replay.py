"""Replay batch files into Klaviyo through ``serve``'s delivery engine, counting every event's fate.

The files' batches are planned into jobs exactly as ingest plans them (``plan_jobs``) and queued
in an embedded SQLite store in a temporary directory, which a ``Dispatcher`` delivers from: the
same mapping at send time, bulk packing, pacing, retries, error-pointer culprits and dead
letters as ``serve``. The store's dedup keeps an event repeated in the input once.

Planning and delivery overlap: jobs are queued in chunks of ``_CHUNK_JOBS`` while the dispatcher
runs, and reading pauses while ``_AHEAD_JOBS`` wait, which bounds the temporary store and keeps
a job's age (what ``max_retry_age_s`` limits) close to how long it waited for its turn. The run
ends when nothing is ready or leased; the directory is deleted then, and after an error. Klaviyo
refusing the key (401/403), which pauses ``serve``, stops a replay.

With a ``Checkpoint`` (the CLI always gives one) the store lives in the checkpoint directory
instead, and an interrupted, stopped or failed run leaves it for ``replay --resume``
(``replay_checkpoint.py``). A Ctrl-C (the task cancelled) first lets every unit already sending
finish (``Dispatcher.quiesce``): what Klaviyo accepted is acked, never sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import msgspec
from prometheus_client.metrics import MetricWrapperBase

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.delivery.clients import client_for
from mparticle_klaviyo.delivery.dispatch_options import DispatchOptions
from mparticle_klaviyo.delivery.dispatcher import Dispatcher
from mparticle_klaviyo.delivery.key_pause import CAUSE
from mparticle_klaviyo.delivery.lane import Transport
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.inputs import InputItem, read_inputs
from mparticle_klaviyo.jobs.plan import EVENT, Planned, plan_jobs
from mparticle_klaviyo.mparticle.files import count_lines
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.overrides import connection_for_request
from mparticle_klaviyo.replay_checkpoint import Checkpoint, Recorder
from mparticle_klaviyo.replay_enqueue import EnqueueSummary, enqueue_files
from mparticle_klaviyo.replay_stats import ACCOUNT_MISMATCH, DUPLICATE_IN_INPUT, ReplayStats, SettleCounter
from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.async_store import AsyncJobStore
from mparticle_klaviyo.store.base import DeadFilter
from mparticle_klaviyo.store.sqlite import SqliteJobStore

__all__ = [
    "ACCOUNT_MISMATCH",
    "DUPLICATE_IN_INPUT",
    "EnqueueSummary",
    "ReplayOptions",
    "ReplayStats",
    "dispatch_options",
    "enqueue_files",
    "plan_item",
    "replay",
]

# Jobs per transaction and wake of the dispatcher: one claim's worth (DispatchOptions.claim_batch).
_CHUNK_JOBS = 1000
# Twice the dispatcher's in-flight window (max_in_flight_jobs): it never waits for reading, and a
# job waits at most a few seconds (server mode) or about two minutes (client mode) for its turn.
_AHEAD_JOBS = 8000
_POLL_S = 0.05
_DEAD_PAGE = 1000


class ReplayOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Knobs of a replay run."""

    max_concurrency: int = 64
    max_attempts: int = 8
    max_retry_age_s: float = 900.0
    timeout_s: float = 10.0

    @property
    def quiesce_s(self) -> float:
        """How long a Ctrl-C waits for requests already out: their answer or their timeout."""
        return self.timeout_s + 1.0


def dispatch_options(options: ReplayOptions) -> DispatchOptions:
    """Replay's knobs on the engine; the temporary store is this process's alone."""
    return DispatchOptions(
        max_attempts=options.max_attempts,
        max_age_s=options.max_retry_age_s,
        max_concurrency=options.max_concurrency,
        sole_owner=True,
        poll_s=_POLL_S,
        # Replay's backoff as before the engine: a run at a terminal should not wait 10 minutes
        # (serve's cap) between two tries of one job.
        backoff_base_s=0.5,
        backoff_cap_s=30.0,
    )


def plan_item(item: InputItem, connection: Connection, stats: ReplayStats, planned: Planned) -> None:
    """Add one input item's jobs to ``planned``; input errors and other accounts' requests are counted."""
    if item.batch is None:
        assert item.error is not None
        stats.input_errors.append((item.location, item.error))
        return
    stats.batches += 1
    stats.events_in += len(item.batch.events)
    try:
        if connection_for_request(connection, item.batch.settings).public_key != connection.public_key:
            # A Firehose request for another Klaviyo account: never send it with these keys.
            stats.dropped[ACCOUNT_MISMATCH] += len(item.batch.events)
            return
        plan_jobs([item.batch], connection, time.time() * 1000, planned)
    except InputError as error:
        stats.input_errors.append((item.location, error))


async def replay(
    paths: list[Path],
    connection: Connection,
    options: ReplayOptions,
    stats: ReplayStats,
    on_progress: Callable[[], None] | None = None,
    checkpoint: Checkpoint | None = None,
    resume: bool = False,
) -> None:
    """Deliver everything in ``paths`` with ``connection``; fills ``stats`` as it goes.

    ``checkpoint``: keep the store there, and leave it unless the run completes; ``resume``:
    continue the run it records (``CheckpointError`` when there is none for these inputs).
    """
    started = time.monotonic()
    recorder = Recorder.begin(checkpoint, paths, connection, stats, resume) if checkpoint else None
    before = stats.elapsed_s
    _count_input_lines(paths, stats)
    with _store_file(checkpoint) as store_path:
        # No fsync per commit: the store outlives a crash of this process, not of the machine.
        store = AsyncStore(SqliteJobStore(store_path, synchronous="NORMAL"))
        complete = False
        try:
            client = client_for(connection, pool_size=options.max_concurrency, timeout_s=options.timeout_s)
            async with client:
                run = _Run(connection, store, client, dispatch_options(options), stats, on_progress, recorder)
                skip = recorder.position if recorder else 0
                await run.deliver(read_inputs(paths), skip=skip, grace_s=options.quiesce_s)
            complete = stats.stopped is None
        except asyncio.CancelledError:
            stats.interrupted = True
            raise
        finally:
            with contextlib.suppress(Exception):  # the summary's failures; never hides the run's own error
                await _count_dead_letters(store, connection.name, stats)
            await store.close()
            stats.elapsed_s = before + time.monotonic() - started
            if recorder is not None:
                recorder.finish(stats, complete)


@contextlib.contextmanager
def _store_file(checkpoint: Checkpoint | None) -> Iterator[Path]:
    """The store's file: in the checkpoint directory, or in a temporary one deleted afterwards."""
    if checkpoint is not None:
        yield checkpoint.store_path
        return
    with tempfile.TemporaryDirectory(prefix="mparticle-klaviyo-replay-") as workdir:
        yield Path(workdir) / "jobs.sqlite3"


def _count_input_lines(paths: list[Path], stats: ReplayStats) -> None:
    """Count the input's lines beside the run, for the progress bar's estimate of the total.

    A daemon thread: it reads the files once more (fast, nothing is decoded), and must never
    hold up the end of the run or a Ctrl-C.
    """

    def count() -> None:
        with contextlib.suppress(OSError, EOFError, ValueError):
            stats.file_lines = [count_lines(path) for path in paths]

    threading.Thread(target=count, name="replay-count-lines", daemon=True).start()


class _Run:
    """One replay: the planner queueing into the temporary store, the dispatcher delivering from it."""

    def __init__(
        self,
        connection: Connection,
        store: AsyncJobStore,
        client: Transport,
        options: DispatchOptions,
        stats: ReplayStats,
        on_progress: Callable[[], None] | None,
        recorder: Recorder | None = None,
    ) -> None:
        self.connection = connection
        self.store = store
        self.stats = stats
        self.metrics = Metrics()
        self.counter = SettleCounter(stats, on_progress)
        self.dispatcher = Dispatcher(connection, store, client, self.metrics, options, observer=self.counter)
        self.recorder = recorder
        self._loop: asyncio.Task[None] | None = None
        # Counts of earlier runs of a resumed replay: this run's engine metrics add to them.
        self._before = (stats.requests, stats.retried_jobs, stats.throttled, stats.limiter_wait_s)

    async def deliver(self, items: Iterable[InputItem], skip: int = 0, grace_s: float = 0.0) -> None:
        """Plan ``items`` (past the first ``skip``) while the dispatcher runs, then wait until every job is settled.

        Cancelled (Ctrl-C): nothing new is sent, and units already sending get ``grace_s`` to settle.
        """
        stop = asyncio.Event()
        self._loop = asyncio.create_task(self.dispatcher.run(stop))
        try:
            if self.stats.input_done or await self._plan(items, skip):
                await self._wait_until(lambda backlog: backlog == 0 and not self.dispatcher.busy())
        except asyncio.CancelledError:
            await self.dispatcher.quiesce(grace_s)
            raise
        finally:
            stop.set()
            await asyncio.gather(self._loop, return_exceptions=True)
            # What has not started sending goes back to the queue (a checkpoint keeps it).
            await self.dispatcher.drain(0.0)
            self._take_totals()
        if self.dispatcher.credentials.paused():
            self._stopped(await self.store.backlog(self.connection.name))

    async def _plan(self, items: Iterable[InputItem], skip: int) -> bool:
        """Queue the jobs of ``items`` chunk by chunk; False when a refused key stopped the run.

        The first ``skip`` items were planned by the run a checkpoint resumes: only read past.
        """
        planned, position = Planned(), skip
        for item in itertools.islice(self._read(items), skip, None):
            position += 1
            plan_item(item, self.connection, self.stats, planned)
            if len(planned.jobs) >= _CHUNK_JOBS:
                await self._enqueue(planned, position)
                planned = Planned()
                if not await self._wait_until(lambda backlog: backlog < _AHEAD_JOBS):
                    return False
        self.stats.input_done = True
        await self._enqueue(planned, position)
        return True

    def _read(self, items: Iterable[InputItem]) -> Iterator[InputItem]:
        """``items``, noting for the progress estimate where reading is."""
        for item in items:
            self.stats.reading_at = (item.file, item.line)
            yield item

    async def _enqueue(self, planned: Planned, position: int) -> None:
        """Queue ``planned``'s jobs in one transaction, count them and wake the dispatcher.

        A Ctrl-C during the commit waits for it to be counted: the store's enqueue is shielded, so
        the commit lands anyway, and uncounted it would leave the checkpoint's position and counts
        behind the store (the resume would read those items again, and its summary count their
        jobs as duplicates instead of queued).
        """
        commit = asyncio.ensure_future(self._commit(planned, position))
        try:
            await asyncio.shield(commit)
        except asyncio.CancelledError:
            await commit  # a second Ctrl-C cancels this wait too, and the run stops at once
            raise
        self.dispatcher.wake.set()
        self.counter.progress()

    async def _commit(self, planned: Planned, position: int) -> None:
        """Store ``planned``'s jobs, then add them to the counts and move the checkpoint's position."""
        # Consents first, so that a batch's subscription is claimed no later than its events;
        # among themselves in input order, which is the order a profile's changes apply in.
        consents = [job for job in planned.jobs if job.kind != EVENT]
        events = [job for job in planned.jobs if job.kind == EVENT]
        # Two calls that AsyncStore commits together, for two answers: a repeated consent is the
        # same state, queued once without a word; a repeated event is reported as a drop.
        now = time.time()
        for_consents, for_events = await asyncio.gather(
            self.store.enqueue(consents, now), self.store.enqueue(events, now)
        )
        # No await from here on: the counts and the position move together with the commit.
        self.stats.dropped.update(planned.dropped)
        self.stats.warnings.update(planned.warnings)
        self.stats.queued_consents += for_consents.stored
        self.stats.queued_events += for_events.stored
        if for_events.duplicates:
            self.stats.dropped[DUPLICATE_IN_INPUT] += for_events.duplicates
        if self.recorder is not None:
            self.recorder.committed(position, self.stats)  # after the commit: never ahead of the store

    async def _wait_until(self, done: Callable[[int], bool]) -> bool:
        """Poll until ``done(backlog)``; False as soon as Klaviyo refused the key (nothing more goes)."""
        assert self._loop is not None
        while True:
            if self._loop.done():
                self._loop.result()  # a crashed loop surfaces here instead of a hang
            if self.dispatcher.credentials.paused():
                return False
            if done(await self.store.backlog(self.connection.name)):
                return True
            if self.recorder is not None:
                self.recorder.progress(self.stats)
            await asyncio.sleep(_POLL_S)

    def _stopped(self, left: int) -> None:
        """Count the jobs a refused key left undelivered; say why the run stopped."""
        refusal = self.dispatcher.credentials.state.refusal
        reason = f"{CAUSE}:http_{refusal.status}" if refusal is not None else CAUSE
        self.stats.failed[reason] += left
        self.stats.failure_details[reason] = f"{self.dispatcher.credentials.cause()}; not sent"
        unread = "" if self.stats.input_done else "; the rest of the input was not read"
        self.stats.stopped = f"Klaviyo refused the credentials{unread}"

    def _take_totals(self) -> None:
        """Requests, retries and waits of the run, from the engine's own metrics."""
        requests, retried, throttled, waited = self._before
        self.stats.requests = requests + int(_total(self.metrics.requests, "_total"))
        self.stats.retried_jobs = retried + int(_total(self.metrics.retried, "_total"))
        self.stats.throttled = throttled + int(_total(self.metrics.throttled, "_total"))
        self.stats.limiter_wait_s = waited + self.dispatcher.pacing_waits()[0]


def _total(metric: MetricWrapperBase, suffix: str) -> float:
    """The sum over every label set of a metric's samples named ``*suffix``."""
    return sum(s.value for family in metric.collect() for s in family.samples if s.name.endswith(suffix))


async def _count_dead_letters(store: AsyncJobStore, connection: str, stats: ReplayStats) -> None:
    """Failed jobs by reason, with the first one's detail, from the temporary store's dead letters."""
    where = DeadFilter(connection=connection)
    offset = 0
    while page := await store.dead(where, _DEAD_PAGE, offset):
        for job in page:
            stats.add_dead_letter(job)
        offset += len(page)
