"""Server mode's bulk senders: per bulk endpoint, the jobs waiting and the tasks that send them.

A sender queues at its lane (gate, slot, token) with nothing in hand; only when the lane admits
a request does it pack one from what waits then (``pending.py``). One sender runs per request's
worth of waiting jobs, up to the lane's concurrency, so a lone event leaves at once and a
trickle is gathered while the limiter holds the next request back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from mparticle_klaviyo.delivery.circuit import Paused
from mparticle_klaviyo.delivery.lane import Lane, Packed, Transport
from mparticle_klaviyo.delivery.payloads import BULK_EVENTS, BULK_SUBSCRIPTIONS, BULK_UNSUBSCRIPTIONS, BulkEventBuilder
from mparticle_klaviyo.delivery.pending import PendingEvents, PendingSubscriptions
from mparticle_klaviyo.delivery.report import Tally
from mparticle_klaviyo.delivery.units import MappedJob, Unit
from mparticle_klaviyo.klaviyo.classify import Outcome
from mparticle_klaviyo.klaviyo.limits import MAX_BULK_UNSUBSCRIBE_PROFILES
from mparticle_klaviyo.store.base import Job

Pending = PendingEvents | PendingSubscriptions
# What the dispatcher does with a unit once its first request was answered (or paused).
Handler = Callable[[Unit, Outcome | Paused], Awaitable[None]]


class BulkSenders:
    """The waiting jobs and running senders of every bulk endpoint of one connection."""

    def __init__(
        self,
        lanes: Mapping[str, Lane],
        client: Callable[[], Transport],
        tally: Tally,
        handle: Handler,
        hold: Callable[[], bool] = lambda: False,
    ) -> None:
        self._lanes = lanes
        self._hold = hold  # True: pack nothing more (the dispatcher is quiescing)
        self._client = client  # asked at each send: the dispatcher's client may be replaced
        self._tally = tally
        self._handle = handle
        self._pending: dict[str, Pending] = {
            f"POST {BULK_EVENTS}": PendingEvents(),
            f"POST {BULK_SUBSCRIPTIONS}": PendingSubscriptions(),
            f"POST {BULK_UNSUBSCRIPTIONS}": PendingSubscriptions(MAX_BULK_UNSUBSCRIBE_PROFILES),
        }
        self._running: dict[str, int] = dict.fromkeys(self._pending, 0)
        self._sending: dict[int, Unit] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.finished = asyncio.Event()  # set whenever a unit is settled: room in the window

    def add(self, mapped: MappedJob) -> bool:
        """Queue a mapped job for its bulk endpoint; False if it is not one for a shared request."""
        if mapped.requests:
            pending = self._pending.get(f"POST {mapped.requests[0].path}")
            if pending is None or mapped.requests[0].path == BULK_EVENTS:
                return False
            pending.add(mapped)
            return True
        # A job too large for one request of its own is sent as a unit of several requests.
        # One event always fits (mapping drops an event whose body could not); measuring every
        # claimed job here took ~15 ms of event loop per 1,000-job claim.
        if len(mapped.events) > 1 and not BulkEventBuilder().fits(mapped.events):
            return False
        self._pending[f"POST {BULK_EVENTS}"].add(mapped)
        return True

    def start(self) -> None:
        """Run enough senders for what waits: one per request it needs, up to the lane's limit."""
        for endpoint, pending in self._pending.items():
            lane = self._lanes.get(endpoint)
            if lane is None or not len(pending):
                continue
            wanted = min(pending.requests_wanted(), max(1, lane.concurrency.limit))
            for _ in range(wanted - self._running[endpoint]):
                self._running[endpoint] += 1
                task = asyncio.create_task(self._send_while_waiting(endpoint, lane, pending))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    async def _send_while_waiting(self, endpoint: str, lane: Lane, pending: Pending) -> None:
        try:
            while len(pending):
                sent = await lane.try_send_packed(self._client(), lambda: self._pack(pending), self._tally)
                if sent is None:
                    return
                unit, outcome = sent
                try:
                    await self._handle(unit, outcome)
                finally:
                    self._sending.pop(id(unit), None)
                    self.finished.set()
        finally:
            self._running[endpoint] -= 1

    def _pack(self, pending: Pending) -> Packed[Unit] | None:
        if self._hold():
            return None  # nothing is sent; what waits is released by the dispatcher's drain
        unit = pending.take()
        if unit is None:
            return None
        self._sending[id(unit)] = unit
        return Packed(unit.requests[0], unit.jobs[0].id, unit)

    def sending(self) -> int:
        """Units packed into a request that is not settled yet."""
        return len(self._sending)

    def waiting(self) -> int:
        """Jobs waiting to be packed."""
        return sum(len(p) for p in self._pending.values())

    def unsettled(self) -> list[Job]:
        """Jobs waiting or in a request not yet settled, taken out of the waiting lists."""
        jobs = [m.job for pending in self._pending.values() for m in pending.drain()]
        return jobs + [job for unit in self._sending.values() for job in unit.jobs]
