"""Planning worker processes: ingest's decode, check and plan, off the event loop's GIL.

Planning a body (``plan_body``) is most of what ingest spends on a request, all of it pure
Python under the GIL that the event loop, the store thread and delivery share. With workers,
the loop writes the body to the least busy worker's stdin and awaits its answer, and the CPU
of planning runs in parallel on another core. A worker that exits is started again; the
requests it held are answered 503 (nothing was stored, the sender retries). Without a running
worker ingest plans in its own process, as it does with ``ingest_workers = 0``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import sys
from collections.abc import Mapping

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.server.errors import PayloadTooLargeError
from mparticle_klaviyo.server.plan_wire import (
    HEADER_BYTES,
    PlanAnswer,
    PlanCall,
    Refusal,
    answer_decoder,
    frame,
    frame_size,
    framed,
)
from mparticle_klaviyo.server.planning import BodyPlan, Limits, Route

log = logging.getLogger(__name__)

WORKER_MODULE = "mparticle_klaviyo.server.plan_worker"
MAX_AUTO_WORKERS = 4
_STOP_TIMEOUT_S = 5.0
_MAX_RESTART_DELAY_S = 30.0


class PlanningError(Exception):
    """A body could not be planned for a reason of ours (a worker failed): 503, nothing stored."""


def auto_workers(cpus: int | None = None) -> int:
    """How many workers ``ingest_workers = "auto"`` means: one per core, at most four; none on one core.

    Measured on 2 cores (BENCHMARKS.md, planning workers): two workers took ingest from ~37,000
    to ~50,000 events/s; one alone gained nothing (it became the queue).
    """
    count = cpus if cpus is not None else len(os.sched_getaffinity(0))
    return 0 if count < 2 else min(MAX_AUTO_WORKERS, count)


class _Worker:
    """One worker process, the calls it has not answered yet, and the task reading its answers."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.waiting: dict[int, asyncio.Future[PlanAnswer]] = {}
        self.reader: asyncio.Task[None] | None = None

    def fail_waiting(self, message: str) -> None:
        """Every unanswered call of this worker fails with ``PlanningError``."""
        waiting, self.waiting = self.waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(PlanningError(message))


class PlanPool:
    """``workers`` planning processes for ``connections``; ``plan`` uses the least busy one."""

    def __init__(
        self,
        connections: Mapping[str, Connection],
        workers: int,
        *,
        call_timeout_s: float = 60.0,
        restart_delay_s: float = 1.0,
    ) -> None:
        self._connections = dict(connections)
        self._size = workers
        self._call_timeout_s = call_timeout_s
        self._first_restart_delay_s = self._restart_delay_s = restart_delay_s
        self._workers: list[_Worker] = []
        self._ids = itertools.count()
        self._closing = False
        self._restarts: set[asyncio.Task[None]] = set()

    def __repr__(self) -> str:
        return f"PlanPool(workers={self._size}, running={self.running})"  # never the connections' keys

    @property
    def running(self) -> int:
        """Workers whose process is running."""
        return sum(1 for w in self._workers if w.process.returncode is None)

    async def start(self) -> None:
        """Start the workers (they load while the first calls already wait in their pipes)."""
        for _ in range(self._size):
            await self._spawn()

    async def _spawn(self) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", WORKER_MODULE, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        worker = _Worker(process)
        assert process.stdin is not None  # both pipes were asked for
        process.stdin.write(framed(pickle.dumps(self._connections)))
        worker.reader = asyncio.create_task(self._read_answers(worker))
        self._workers.append(worker)
        return worker

    async def plan(self, route: Route, raw: bytes, connection: str, limits: Limits, now_ms: float) -> BodyPlan | None:
        """The body's plan from a worker; None when no worker runs (plan in-process then).

        Raises ``InputError`` (400) and ``PayloadTooLargeError`` (413) as ``plan_body`` does, and
        ``PlanningError`` when the worker failed or took longer than the call timeout.
        """
        worker = self._least_busy()
        if worker is None:
            return None
        call_id = next(self._ids)
        answered: asyncio.Future[PlanAnswer] = asyncio.get_running_loop().create_future()
        worker.waiting[call_id] = answered
        stdin = worker.process.stdin
        assert stdin is not None
        try:
            stdin.write(frame(PlanCall(call_id, route, connection, limits, now_ms, raw)))
            await stdin.drain()
            answer = await asyncio.wait_for(asyncio.shield(answered), self._call_timeout_s)
        except ConnectionError as error:  # its pipe closed: the worker is gone
            raise PlanningError(f"planning worker unavailable ({type(error).__name__})") from None
        except TimeoutError:
            log.error("a planning worker took over %.0f s for one body; stopping it", self._call_timeout_s)
            worker.process.kill()
            raise PlanningError("planning took too long") from None
        finally:
            worker.waiting.pop(call_id, None)
        return _plan_of(answer)

    def _least_busy(self) -> _Worker | None:
        running = [w for w in self._workers if w.process.returncode is None and w.reader is not None]
        return min(running, key=lambda w: len(w.waiting), default=None)

    async def _read_answers(self, worker: _Worker) -> None:
        stdout = worker.process.stdout
        assert stdout is not None
        try:
            while True:
                header = await stdout.readexactly(HEADER_BYTES)
                answer = answer_decoder.decode(await stdout.readexactly(frame_size(header)))
                answered = worker.waiting.pop(answer.id, None)
                if answered is not None and not answered.done():
                    answered.set_result(answer)
                self._restart_delay_s = self._first_restart_delay_s  # workers answer again
        except asyncio.IncompleteReadError:
            pass  # the worker exited
        finally:
            worker.reader = None
            worker.fail_waiting("planning worker exited")
            if not self._closing:
                self._restart_later(worker)

    def _restart_later(self, worker: _Worker) -> None:
        task = asyncio.create_task(self._restart(worker))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, worker: _Worker) -> None:
        """Replace a worker that exited, after a delay that doubles while workers keep dying."""
        code = await worker.process.wait()
        self._workers.remove(worker)
        delay = self._restart_delay_s
        self._restart_delay_s = min(_MAX_RESTART_DELAY_S, self._restart_delay_s * 2)
        log.warning("a planning worker exited (code %s); starting another in %.0f s", code, delay)
        await asyncio.sleep(delay)
        if not self._closing:
            await self._spawn()

    async def close(self) -> None:
        """Stop every worker: its stdin closes, it finishes its call and exits (killed if it does not)."""
        self._closing = True
        for task in list(self._restarts):
            task.cancel()
        for worker in self._workers:
            if worker.process.stdin is not None:
                worker.process.stdin.close()
        for worker in self._workers:
            try:
                await asyncio.wait_for(worker.process.wait(), _STOP_TIMEOUT_S)
            except TimeoutError:
                worker.process.kill()
                await worker.process.wait()
            if worker.reader is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await worker.reader
        self._workers = []


def _plan_of(answer: PlanAnswer) -> BodyPlan:
    """The plan a worker answered, or the refusal it reported, raised as ``plan_body`` raises it."""
    if answer.refusal is Refusal.INPUT:
        raise InputError(answer.pointer, answer.message)
    if answer.refusal is Refusal.TOO_LARGE:
        raise PayloadTooLargeError(answer.message, answer.pointer)
    if answer.refusal is Refusal.INTERNAL or answer.plan is None:
        raise PlanningError(f"planning failed in a worker ({answer.message or 'no plan'})")
    return answer.plan
