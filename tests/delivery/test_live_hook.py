"""Delivery's Live stream hook: each send unit's requests and the verdict on its jobs are recorded."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import msgspec

from mparticle_klaviyo.delivery.dispatcher import Dispatcher
from mparticle_klaviyo.observe.live import LiveTraffic, RequestOut
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.store.base import NewJob
from tests.service.e2e_helpers import FAST, client_for, custom_event, run_async, user_batch, wait_until
from tests.service.rig import DeliveryRig


async def _delivered_by(rig: DeliveryRig, live: LiveTraffic) -> None:
    """Run a dispatcher that records into ``live`` until the rig's connection has nothing left."""
    client = client_for(rig.conn)
    dispatcher = Dispatcher(rig.conn, rig.store, client, Metrics(), FAST, live=live)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))

    async def empty() -> bool:
        return await rig.store.backlog(rig.conn.name) == 0 and not dispatcher.busy()

    try:
        await wait_until(empty, 15, "an empty backlog")
    finally:
        stop.set()
        await task
        await dispatcher.drain(1.0)
        await client.close()


def _requests(live: LiveTraffic) -> list[RequestOut]:
    return [e for e in live.entries("out") if isinstance(e, RequestOut)]


def test_a_bulk_request_is_recorded_with_its_counts_first_inputs_and_a_trimmed_body(tmp_path: Path) -> None:
    async def scenario() -> None:
        batches = [user_batch(f"u{n}", [custom_event(f"m-{n}-{i}") for i in range(2)]) for n in range(5)]
        async with DeliveryRig(tmp_path, server=True, batches=batches, dispatcher=False) as rig:
            live = LiveTraffic()
            await _delivered_by(rig, live)
            events = [e for e in _requests(live) if e.endpoint == "POST /api/event-bulk-create-jobs"]
            assert sum(e.jobs for e in events) == 10 and all(e.verdict.outcome == "delivered" for e in events)
            biggest = max(events, key=lambda e: e.jobs)
            assert len(biggest.inputs) == min(3, biggest.jobs)
            body = biggest.requests[0][1].data
            assert body is not None
            listed = msgspec.json.decode(body)["data"]["attributes"]["events-bulk-create"]["data"]
            assert len(listed) <= 4

    run_async(scenario())


def test_a_job_that_maps_to_nothing_is_recorded_as_dropped_without_a_request(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with DeliveryRig(tmp_path, dispatcher=False) as rig:
            garbage = NewJob(connection=rig.conn.name, key="k", profile_key="p", kind="event", payload=b"\x01garbage")
            await rig.store.enqueue([garbage], time.time())
            live = LiveTraffic()
            await _delivered_by(rig, live)
            [entry] = _requests(live)
            assert (entry.verdict.outcome, entry.endpoint, entry.requests) == ("dropped", "", ())
            assert entry.verdict.reason.startswith("unmappable") and entry.inputs[0].payload.data == b"\x01garbage"

    run_async(scenario())


def test_a_throttled_request_is_recorded_as_retried_with_429_and_when_it_is_due(tmp_path: Path) -> None:
    async def scenario() -> None:
        fault = {"path": "/client/events", "status": 429, "count": 1}
        batches = [user_batch("ann", [custom_event("m-1")])]
        async with DeliveryRig(tmp_path, faults=[fault], batches=batches, dispatcher=False) as rig:
            live = LiveTraffic()
            await _delivered_by(rig, live)
            delivered, throttled = _requests(live)
            assert delivered.verdict.outcome == "delivered"
            assert (throttled.verdict.outcome, throttled.verdict.status) == ("retried", 429)
            assert throttled.verdict.due is not None and throttled.verdict.due > throttled.at

    run_async(scenario())
