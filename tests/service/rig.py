"""One async test rig for delivery tests: a recording emulator, a real SQLite store, dispatchers.

``async with DeliveryRig(tmp_path, ...) as rig:`` starts what a delivery test needs, in the
order the tests always did (emulator, its fault rules, store, connection, the first batches,
the dispatcher), and tears it all down on the way out, even when the body raises:
every dispatcher stops (and closes its client), then the emulator closes, then the store.
A failing teardown step does not stop the later ones, and never hides the body's exception
(its errors are added to that exception as notes).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.delivery.dispatch_options import DispatchOptions
from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig
from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.base import EnqueueResult, Job
from tests.service.e2e_helpers import (
    FAST,
    Delivery,
    RecordingEmulator,
    connection,
    dead_jobs,
    enqueue,
    open_store,
    start_recording_emulator,
)

STORE_FILE = "jobs.sqlite3"
# A teardown step that takes longer than this is stuck; give up on it so that the later steps
# (and the test's own failure) still come out instead of the run hanging until pytest's timeout.
TEARDOWN_STEP_S = 30.0


class DeliveryRig:
    """An emulator, a store and the dispatchers delivering from it, as one async context manager.

    Entered, it has ``emulator``, ``store`` (the file ``store_path`` in ``tmp_path``), ``conn``
    and ``delivery`` (the dispatcher made last; all of them are in ``deliveries``).

    Arguments: ``emulator`` configures the recording emulator and ``faults`` are added to it at
    once; ``klaviyo_url`` aims the connection elsewhere instead (a refusing port, a scripted
    server) and starts no emulator. ``store`` hands the rig a store the test opened itself (the
    rig closes it). ``batches`` are enqueued before the dispatcher is made. ``dispatcher=False``
    makes none (see ``deliver``); ``start=False`` makes it without starting it (see ``start``).
    ``server`` and ``settings`` go to the connection; ``options``, ``timeout_s``, ``rng`` and
    ``wall_clock`` to the dispatcher.
    """

    def __init__(
        self,
        tmp_path: Path,
        *,
        emulator: EmulatorConfig | None = None,
        faults: Sequence[dict[str, Any]] = (),
        klaviyo_url: str | None = None,
        store: AsyncStore | None = None,
        batches: list[dict[str, Any]] | None = None,
        dispatcher: bool = True,
        start: bool = True,
        options: DispatchOptions = FAST,
        timeout_s: float = 5.0,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
        server: bool = False,
        **settings: Any,
    ) -> None:
        if klaviyo_url is not None and (emulator is not None or faults):
            raise ValueError("an emulator config or fault rules need the rig's emulator, not klaviyo_url")
        self.store_path = tmp_path / STORE_FILE
        self.deliveries: list[Delivery] = []
        self._emulator_config = emulator
        self._faults = list(faults)
        self._klaviyo_url = klaviyo_url
        self._given_store = store
        self._batches = batches
        self._dispatcher = dispatcher
        self._start = start
        self._options = options
        self._timeout_s = timeout_s
        self._rng = rng
        self._wall_clock = wall_clock
        self._server = server
        self._settings = settings
        self._emulator: RecordingEmulator | None = None
        self._store: AsyncStore | None = None
        self._conn: Connection | None = None
        self._torn_down = False

    # ------------------------------------------------------------------------- the parts

    @property
    def emulator(self) -> RecordingEmulator:
        """The recording emulator (a rig aimed at ``klaviyo_url`` has none)."""
        assert self._emulator is not None, "this rig has no emulator: it was aimed at klaviyo_url"
        return self._emulator

    @property
    def store(self) -> AsyncStore:
        """The job store at ``store_path`` (or the one the test handed in)."""
        assert self._store is not None, "the rig is not entered"
        return self._store

    @property
    def conn(self) -> Connection:
        """The rig's connection, aimed at the emulator (or at ``klaviyo_url``)."""
        assert self._conn is not None, "the rig is not entered"
        return self._conn

    @property
    def url(self) -> str:
        """Klaviyo's base URL for this rig: the emulator's, or ``klaviyo_url``."""
        return self._klaviyo_url if self._klaviyo_url is not None else self.emulator.url

    @property
    def delivery(self) -> Delivery:
        """The dispatcher made last (by the rig or by ``deliver``)."""
        assert self.deliveries, "this rig has no dispatcher yet: call deliver()"
        return self.deliveries[-1]

    def connection(self, *, server: bool = False, **settings: Any) -> Connection:
        """Another connection aimed at the same Klaviyo (a fixed config, a second account)."""
        return connection(self.url, server=server, **settings)

    # ------------------------------------------------------------------------- doing things

    def deliver(
        self,
        options: DispatchOptions = FAST,
        *,
        conn: Connection | None = None,
        timeout_s: float = 5.0,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
        start: bool = True,
    ) -> Delivery:
        """A new dispatcher on the rig's store (a restart, a fixed connection); torn down with the rig."""
        made = Delivery(conn or self.conn, self.store, options, timeout_s=timeout_s, rng=rng, wall_clock=wall_clock)
        self.deliveries.append(made)
        if start:
            made.start()
        return made

    def start(self) -> None:
        """Start the current dispatcher (one made with ``start=False``)."""
        self.delivery.start()

    def wake(self) -> None:
        """Have the current dispatcher look at the store now instead of at its next poll."""
        self.delivery.dispatcher.wake.set()

    async def enqueue(self, batches: list[dict[str, Any]], conn: Connection | None = None) -> EnqueueResult:
        """Plan ``batches`` for the rig's connection (or ``conn``) as ingest does, and commit them."""
        return await enqueue(self.store, conn or self.conn, batches)

    async def until_empty(self, timeout_s: float = 15.0) -> None:
        """Wait until the current dispatcher's connection has nothing ready or leased."""
        await self.delivery.until_empty(timeout_s)

    async def shutdown(self, drain_s: float = 5.0) -> None:
        """Stop the current dispatcher now (before assertions on what it left); teardown won't again."""
        await self.delivery.shutdown(drain_s)

    async def dead(self, conn: Connection | None = None) -> list[Job]:
        """Every dead job in the store (of one connection, or all)."""
        return await dead_jobs(self.store, conn)

    async def failing(self) -> list[Job]:
        """The rig connection's jobs that failed and wait for a retry."""
        return await self.store.failing_jobs(self.conn.name)

    # ------------------------------------------------------------------------- set-up and teardown

    async def __aenter__(self) -> DeliveryRig:
        self._store = self._given_store  # the rig owns a store handed in: closed even if set-up fails
        try:
            if self._klaviyo_url is None:
                self._emulator = await start_recording_emulator(self._emulator_config)
                for rule in self._faults:
                    self._emulator.add_fault(rule)
            if self._store is None:
                self._store = open_store(self.store_path)
            self._conn = connection(self.url, server=self._server, **self._settings)
            if self._batches is not None:
                await self.enqueue(self._batches)
            if self._dispatcher:
                self.deliver(
                    self._options,
                    timeout_s=self._timeout_s,
                    rng=self._rng,
                    wall_clock=self._wall_clock,
                    start=self._start,
                )
        except BaseException as error:
            # No __aexit__ follows a failed __aenter__: undo what was started here.
            _note(error, await self._teardown())
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        failures = await self._teardown()
        if error is not None:
            _note(error, failures)  # the body's exception propagates (we return None, not True)
        elif len(failures) == 1:
            raise failures[0]
        elif failures:
            raise ExceptionGroup("the rig's teardown failed", failures)

    async def _teardown(self) -> list[Exception]:
        """Stop every dispatcher (newest first), then the emulator, then the store; each step runs."""
        if self._torn_down:
            return []
        self._torn_down = True
        steps: list[Callable[[], Awaitable[None]]] = [delivery.shutdown for delivery in reversed(self.deliveries)]
        if self._emulator is not None:
            steps.append(self._emulator.close)
        if self._store is not None:
            steps.append(self._store.close)
        failures: list[Exception] = []
        for step in steps:
            try:
                async with asyncio.timeout(TEARDOWN_STEP_S):
                    await step()
            except Exception as failure:  # keep going: the later parts must be closed all the same
                failures.append(failure)
        return failures


def _note(error: BaseException, failures: list[Exception]) -> None:
    for failure in failures:
        error.add_note(f"and the rig's teardown failed: {failure!r}")
