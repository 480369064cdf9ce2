"""``serve`` watches its store: deleted, replaced or full, it stops answering 202 at once.

The first test runs the real ``serve`` process against the emulator, deletes the store's files
under it, and checks that no request is acknowledged from then on, that what was acknowledged
before is still delivered, and that after a restart nothing acknowledged is missing. The others
run ``Service`` in this test's loop, where the disk's free space can be steered.

Tests marked ``NEEDS APP WIRING`` check what ``server/app.py`` answers once it maps
``StoreUnavailableError`` to ``store_unavailable_response`` and ``/readyz`` consults
``store.problem()``; until then the service still refuses with a generic 503.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from mparticle_klaviyo.config import load_config
from mparticle_klaviyo.service.runner import Service
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from mparticle_klaviyo.store.watch import StoreWatch
from tests.service.e2e_helpers import (
    RecordingEmulator,
    ServeProcess,
    basic_auth,
    custom_event,
    free_port,
    run_async,
    start_recording_emulator,
    user_batch,
    wait_until,
    write_service_config,
)

STORE_FILES = ("", "-wal", "-shm")
MIB = 1024 * 1024


class Reply:
    """One HTTP answer: status, Retry-After, JSON body (or None)."""

    def __init__(self, status: int, retry_after: str | None, body: Any) -> None:
        self.status = status
        self.retry_after = retry_after
        self.body = body

    def __repr__(self) -> str:
        return f"Reply({self.status}, retry_after={self.retry_after!r}, {self.body!r})"


async def request(method: str, url: str, batches: list[dict[str, Any]] | None = None) -> Reply:
    """``method url`` (a bulk of ``batches`` for a POST) on a fresh session."""
    headers = {"Authorization": basic_auth()}
    async with aiohttp.ClientSession() as session, session.request(method, url, json=batches, headers=headers) as got:
        text = await got.text()
        return Reply(got.status, got.headers.get("Retry-After"), json.loads(text) if text else None)


def bulk(tag: str, users: int = 2, events: int = 2) -> tuple[list[dict[str, Any]], list[str]]:
    """A bulk request of ``users`` batches with ``events`` custom events each, and the events' ids."""
    ids = [[f"{tag}-u{u}-e{e}" for e in range(events)] for u in range(users)]
    batches = [user_batch(f"{tag}-u{u}", [custom_event(event) for event in ids[u]]) for u in range(users)]
    return batches, [event for user in ids for event in user]


def delete_store(path: Path) -> None:
    """What the issue's operator did: remove the store's files under the running service."""
    for suffix in STORE_FILES:
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def replace_store(path: Path) -> None:
    """Move a fresh, empty store over the running service's file (as a botched restore would)."""
    other = path.with_name("other.sqlite3")
    SqliteJobStore(other).close()
    os.replace(other, path)


def recorded(emulator: RecordingEmulator) -> Counter[str]:
    """How many times Klaviyo recorded each event ``unique_id``."""
    return Counter(emulator.unique_ids())


async def until_recorded(emulator: RecordingEmulator, ids: set[str], what: str) -> None:
    """Wait until Klaviyo recorded every one of ``ids``."""

    async def done() -> bool:
        return ids <= set(emulator.unique_ids())

    await wait_until(done, 20.0, what)


def test_serve_stops_acknowledging_once_its_store_is_deleted_and_loses_nothing_over_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        port = free_port()
        service = ServeProcess(write_service_config(tmp_path, emulator.url, port), port, tmp_path / "serve.log")
        await service.start()
        acknowledged: set[str] = set()
        try:
            for n in range(5):
                batches, ids = bulk(f"before{n}")
                assert (await request("POST", f"{service.url}/v2/bulkevents", batches)).status == 202
                acknowledged.update(ids)
            delete_store(tmp_path / "jobs.sqlite3")
            refused = [bulk(f"after{n}") for n in range(5)]
            replies = [await request("POST", f"{service.url}/v2/bulkevents", batches) for batches, _ in refused]
            assert [reply.status for reply in replies] == [503] * 5, replies
            assert all(reply.retry_after for reply in replies), replies
            # The open (unlinked) file still feeds delivery: what was acknowledged before goes out.
            await until_recorded(emulator, acknowledged, "the events acknowledged before the deletion")
            assert await service.terminate() == 0
            await service.start()
            for batches, ids in refused:  # mParticle retries what got a 503
                assert (await request("POST", f"{service.url}/v2/bulkevents", batches)).status == 202
                acknowledged.update(ids)
            await until_recorded(emulator, acknowledged, "every acknowledged event after the restart")
            assert await service.terminate() == 0
        finally:
            await service.ensure_stopped()
            await emulator.close()
        counts = recorded(emulator)
        assert set(counts) == acknowledged
        assert max(counts.values()) == 1
        log = service.log.read_text()
        errors = [line for line in map(json.loads, log.splitlines()) if line.get("level") == "error"]
        assert any(
            line.get("problem") == "deleted" and "until serve is restarted" in line["message"] for line in errors
        ), log[-3000:]

    run_async(scenario(), timeout_s=90)


# ----------------------------------------------------------------------------- Service in this loop


class Running:
    """``Service`` serving in this loop on a free port, delivering to a recording emulator."""

    def __init__(self, service: Service, task: asyncio.Task[None], emulator: RecordingEmulator) -> None:
        self.service = service
        self.task = task
        self.emulator = emulator
        self.url = f"http://127.0.0.1:{service.config.service.port}"
        self.store_path = Path(service.config.service.store)

    @classmethod
    async def start(cls, tmp_path: Path, watch: dict[str, Any] | None = None) -> Running:
        emulator = await start_recording_emulator()
        config = load_config(write_service_config(tmp_path, emulator.url, free_port()))
        service = Service(config)
        if watch is not None:  # the watch serve made, with a steerable disk and clock
            assert service.store.watch is not None
            service.store.watch.close()
            service.store.watch = StoreWatch(Path(config.service.store), **watch)
        ready = asyncio.Event()
        task = asyncio.create_task(service.run(ready))
        await asyncio.wait_for(ready.wait(), 10)
        return cls(service, task, emulator)

    async def post(self, tag: str) -> Reply:
        return await request("POST", f"{self.url}/v2/bulkevents", bulk(tag)[0])

    async def get(self, path: str) -> Reply:
        return await request("GET", f"{self.url}{path}")

    async def metric(self, name: str) -> float:
        async with aiohttp.ClientSession() as session, session.get(f"{self.url}/metrics") as response:
            text = await response.text()
        [line] = [line for line in text.splitlines() if line.startswith(f"{name} ")]
        return float(line.split()[1])

    async def stop(self) -> None:
        self.service.stop.set()
        await asyncio.wait_for(self.task, 15)
        await self.emulator.close()


class Disk:
    """``os.statvfs`` of a disk with ``free`` bytes."""

    def __init__(self) -> None:
        self.free = 10_000 * MIB

    def __call__(self, path: str) -> os.statvfs_result:
        blocks = self.free // 4096
        return os.statvfs_result((4096, 4096, 10**9, blocks, blocks, 10**6, 10**6, 10**6, 0, 255))


class Clock:
    """A monotonic clock moved by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_store_gauge_is_one_while_the_store_is_fine_and_zero_once_it_is_deleted(tmp_path: Path) -> None:
    async def scenario() -> None:
        running = await Running.start(tmp_path)
        try:
            assert await running.metric("mpk_store_ok") == 1.0
            delete_store(running.store_path)
            assert await running.metric("mpk_store_ok") == 0.0
        finally:
            await running.stop()

    run_async(scenario())


def test_ingest_refused_for_low_disk_space_resumes_by_itself_when_space_is_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        disk, clock = Disk(), Clock()
        running = await Running.start(tmp_path, {"min_free_bytes": 64 * MIB, "clock": clock, "statvfs": disk})
        try:
            assert (await running.post("fine")).status == 202
            disk.free = 10 * MIB
            clock.now += 1.0
            low = [await running.post(f"low{n}") for n in range(3)]
            assert [reply.status for reply in low] == [503] * 3, low
            assert all(reply.retry_after for reply in low)
            disk.free = 1000 * MIB
            clock.now += 1.0
            assert (await running.post("back")).status == 202
            await until_recorded(running.emulator, set(bulk("fine")[1]) | set(bulk("back")[1]), "the accepted events")
            assert not set(bulk("low0")[1]) & set(running.emulator.unique_ids())
        finally:
            await running.stop()

    run_async(scenario())


# ----------------------------------------------------------------------------- NEEDS APP WIRING


@pytest.mark.parametrize(("damage", "kind"), [(delete_store, "deleted"), (replace_store, "replaced")])
def test_readyz_is_503_naming_a_deleted_or_replaced_store_and_that_a_restart_is_needed(
    tmp_path: Path, damage: Any, kind: str
) -> None:
    # NEEDS APP WIRING: /readyz consults store.problem().
    async def scenario() -> None:
        running = await Running.start(tmp_path)
        try:
            assert (await running.get("/readyz")).status == 200
            damage(running.store_path)
            ready = await running.get("/readyz")
            assert ready.status == 503
            assert ready.body["status"] == "store unavailable"
            assert (ready.body["kind"], ready.body["restart_needed"]) == (kind, True)
            assert str(running.store_path) in ready.body["message"]
        finally:
            await running.stop()

    run_async(scenario())


def test_ingest_refused_for_a_deleted_store_is_a_store_unavailable_503_and_one_error_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # NEEDS APP WIRING: StoreUnavailableError -> store_unavailable_response (no "ingest failed" per request).
    async def scenario() -> None:
        running = await Running.start(tmp_path)
        try:
            delete_store(running.store_path)
            replies = [await running.post(f"after{n}") for n in range(3)]
        finally:
            await running.stop()
        for reply in replies:
            assert (reply.status, reply.retry_after) == (503, "5"), reply
            [error] = reply.body["errors"]
            assert error["code"] == "STORE_UNAVAILABLE"
            assert "was deleted" in error["message"] and "nothing was acknowledged" in error["message"]

    caplog.set_level(logging.INFO)
    run_async(scenario())
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.name for record in errors] == ["mparticle_klaviyo.store"], [r.getMessage() for r in errors]
    assert "was deleted" in errors[0].getMessage()


def test_readyz_follows_low_disk_space_and_recovers_by_itself(tmp_path: Path) -> None:
    # NEEDS APP WIRING: /readyz consults store.problem().
    async def scenario() -> None:
        disk, clock = Disk(), Clock()
        running = await Running.start(tmp_path, {"min_free_bytes": 64 * MIB, "clock": clock, "statvfs": disk})
        try:
            disk.free = 10 * MIB
            clock.now += 1.0
            low = await running.get("/readyz")
            disk.free = 1000 * MIB
            clock.now += 1.0
            back = await running.get("/readyz")
        finally:
            await running.stop()
        assert low.status == 503
        assert (low.body["kind"], low.body["restart_needed"]) == ("low_disk", False)
        assert "10.0 MiB free" in low.body["message"]
        assert (back.status, back.body) == (200, {"status": "ready"})

    run_async(scenario())
