"""Replay batch files into Klaviyo: read, map, pack and deliver, counting every event's fate.

Server mode packs events into bulk event jobs and consents into bulk subscription jobs, across
batches. A batch's subscription job is handed to the sender no later than the first bulk job
carrying that batch's events, as when each batch had a subscription job of its own; the two go
to different endpoints, so Klaviyo may still receive them in either order. When Klaviyo refuses
a bulk job with an error pointer naming one entry, only that entry fails: the rest of the job
is re-sent as a new job (which is treated the same way, and shrinks each time).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.delivery import DeliveryReport, Result, Sender
from mparticle_klaviyo.delivery.clients import client_for
from mparticle_klaviyo.delivery.payloads import (
    BulkEventBuilder,
    BulkSubscriptionBuilder,
    client_event_request,
    refusal,
    request_units,
    subscription_request,
)
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.inputs import InputItem, Mapped, map_item, read_inputs
from mparticle_klaviyo.jobs.plan import Planned, plan_jobs
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.mapping.result import MappedEvent, Subscription
from mparticle_klaviyo.store.base import JobStore

ACCOUNT_MISMATCH = "account_mismatch"
# A server-mode event already in the same bulk job (same profile, metric and unique_id).
DUPLICATE_IN_INPUT = "duplicate_in_input"


class ReplayStats:
    """What happened to every batch and event of a replay."""

    def __init__(self) -> None:
        self.batches = 0
        self.input_errors: list[tuple[str, InputError]] = []
        self.events_in = 0
        self.events_mapped = 0
        self.events_delivered = 0
        self.subscriptions_delivered = 0
        self.requests_planned = 0
        self.requests_done = 0
        self.input_done = False
        self.dropped: Counter[str] = Counter()
        self.warnings: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.failure_details: dict[str, str] = {}

    @property
    def failed_total(self) -> int:
        """Events and subscriptions that Klaviyo did not accept."""
        return sum(self.failed.values())

    def record_result(self, request: KlaviyoRequest, result: Result) -> None:
        """Count one finished request for each event (or subscribed profile) it carried."""
        self.requests_done += 1
        units = request_units(request)
        if result.ok:
            if request.kind.startswith("subscription"):
                self.subscriptions_delivered += units
            else:
                self.events_delivered += units
            return
        self._failed(units, result)

    def settle(self, request: KlaviyoRequest, result: Result) -> list[KlaviyoRequest]:
        """Count one finished request; a bulk job refused for one entry returns the rest to re-send."""
        split = None if result.ok else refusal(request, result.pointer)
        if split is None:
            self.record_result(request, result)
            return []
        self.requests_done += 1
        self._failed(split.refused, result)
        if split.rest is None:
            return []
        self.requests_planned += 1
        return [split.rest]

    def _failed(self, units: int, result: Result) -> None:
        reason = result.reason or "unknown"
        self.failed[reason] += units
        self.failure_details.setdefault(reason, result.detail)


class ServerPacker:
    """Server mode: events into bulk event jobs, consents into bulk subscription jobs.

    A batch's consents are handed over no later than the first event job carrying its events.
    """

    def __init__(self) -> None:
        self.events = BulkEventBuilder()
        self.subscriptions = BulkSubscriptionBuilder()

    def add_batch(
        self, events: list[MappedEvent], subscriptions: list[Subscription], list_id: str | None
    ) -> Iterator[KlaviyoRequest]:
        """Pack one batch; yields the jobs it completes."""
        # A job cut before the batch's first event holds earlier batches only; every later cut
        # may hold this batch's events, so its consents are pending (and flushed first) by then.
        for event in events[:1]:
            yield from self._add_event(event)
        for subscription in subscriptions:
            yield from self.subscriptions.add(subscription, list_id)
        for event in events[1:]:
            yield from self._add_event(event)

    def _add_event(self, event: MappedEvent) -> Iterator[KlaviyoRequest]:
        for job in self.events.add(event):
            yield from self.subscriptions.flush()
            yield job

    def flush(self) -> Iterator[KlaviyoRequest]:
        """The last jobs at the end of input, consents first."""
        yield from self.subscriptions.flush()
        yield from self.events.flush()


class RequestPlanner:
    """Turns input items into requests; server mode packs events and consents across batches."""

    def __init__(self, connection: Connection, stats: ReplayStats, now_ms: float) -> None:
        self.connection = connection
        self.stats = stats
        self.now_ms = now_ms
        self._packer = ServerPacker() if connection.server_mode else None
        self._subscribed: set[tuple[str | None, str | None, tuple[str, ...]]] = set()

    def requests(self, items: Iterable[InputItem]) -> Iterator[KlaviyoRequest]:
        """Every request for ``items``, in input order, flushing the last bulk jobs at the end."""
        for item in items:
            yield from self._count(self._item_requests(item))
        if self._packer is not None:
            yield from self._count(self._packer.flush())
        self.stats.input_done = True

    def _count(self, requests: Iterable[KlaviyoRequest]) -> Iterator[KlaviyoRequest]:
        for request in requests:
            self.stats.requests_planned += 1
            yield request

    def _item_requests(self, item: InputItem) -> Iterator[KlaviyoRequest]:
        mapped = self._map(item)
        if mapped is None:
            return
        self.stats.events_mapped += len(mapped.result.events)
        for notice in mapped.result.notices:
            (self.stats.dropped if notice.kind == "dropped" else self.stats.warnings)[notice.reason] += 1
        fresh = self._new_subscriptions(mapped)
        list_id = mapped.connection.mapping.list_id
        if self._packer is None:
            yield from (subscription_request(s, list_id, server_mode=False) for s in fresh)
            yield from map(client_event_request, mapped.result.events)
            return
        yield from self._packer.add_batch(mapped.result.events, fresh, list_id)
        if self._packer.events.duplicates:
            self.stats.dropped[DUPLICATE_IN_INPUT] = self._packer.events.duplicates

    def _map(self, item: InputItem) -> Mapped | None:
        """Map one item; input errors and credential mismatches are recorded, not raised."""
        if item.error is not None:
            self.stats.input_errors.append((item.location, item.error))
            return None
        assert item.batch is not None
        self.stats.batches += 1
        self.stats.events_in += len(item.batch.events)
        try:
            mapped = map_item(item, self.connection, self.now_ms)
        except InputError as error:
            self.stats.input_errors.append((item.location, error))
            return None
        if mapped.connection.public_key != self.connection.public_key:
            # A Firehose request for another Klaviyo account: never send it with these keys.
            self.stats.dropped[ACCOUNT_MISMATCH] += len(item.batch.events)
            return None
        return mapped

    def _new_subscriptions(self, mapped: Mapped) -> list[Subscription]:
        """Each granted (profile, channels) once per replay: subscribing has side effects."""
        fresh = []
        for subscription in mapped.result.subscriptions:
            key = (subscription.email, subscription.phone_number, subscription.channels)
            if key not in self._subscribed:
                self._subscribed.add(key)
                fresh.append(subscription)
        return fresh


class ReplayOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Knobs of a replay run."""

    max_concurrency: int = 64
    max_attempts: int = 8
    max_retry_age_s: float = 900.0
    timeout_s: float = 10.0


async def replay(
    paths: list[Path],
    connection: Connection,
    options: ReplayOptions,
    stats: ReplayStats,
    on_result: Callable[[KlaviyoRequest, Result], None] | None = None,
) -> DeliveryReport:
    """Deliver everything in ``paths`` with ``connection``; fills ``stats`` as it goes."""
    planner = RequestPlanner(connection, stats, time.time() * 1000)

    def record(request: KlaviyoRequest, result: Result) -> list[KlaviyoRequest]:
        resend = stats.settle(request, result)
        if on_result is not None:
            on_result(request, result)
        return resend

    client = client_for(connection, pool_size=options.max_concurrency, timeout_s=options.timeout_s)
    async with client:
        sender = Sender(
            client,
            connection.rate_limits,
            max_concurrency=options.max_concurrency,
            max_attempts=options.max_attempts,
            max_retry_age_s=options.max_retry_age_s,
        )
        return await sender.deliver(planner.requests(read_inputs(paths)), record)


class EnqueueSummary(msgspec.Struct, kw_only=True):
    """What ``replay --enqueue`` queued."""

    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    input_errors: int = 0
    dropped: dict[str, int] = msgspec.field(default_factory=dict)


def enqueue_files(paths: list[Path], connection: Connection, store: JobStore, chunk: int = 500) -> EnqueueSummary:
    """Queue every forwardable event of ``paths`` for the service, in transactions of ``chunk`` batches."""
    summary = EnqueueSummary()
    dropped: Counter[str] = Counter()
    planned = Planned()

    def commit() -> None:
        nonlocal planned
        result = store.enqueue(planned.jobs, time.time())
        summary.stored += result.stored
        summary.duplicates += result.duplicates
        dropped.update(planned.dropped)
        planned = Planned()

    for item in read_inputs(paths):
        if item.batch is None:
            summary.input_errors += 1
            continue
        summary.batches += 1
        try:
            plan_jobs([item.batch], connection, time.time() * 1000, planned)
        except InputError:
            summary.input_errors += 1
        if summary.batches % chunk == 0:
            commit()
    commit()
    summary.dropped = dict(dropped)
    return summary
