"""``serve`` with planning workers (``ingest_workers``): same answers, every event delivered, clean stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from tests.service.e2e_helpers import (
    RecordingEmulator,
    basic_auth,
    custom_event,
    post_bulk,
    recording_emulator,
    run_async,
    serving,
    user_batch,
    wait_until,
)

WORKER = b"mparticle_klaviyo.server.plan_worker"


def workers_of(pid: int) -> list[int]:
    """The planning workers among ``pid``'s children, read from /proc."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children if WORKER in _command(int(c))]


def _command(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return b""


def _batches(first: int, end: int) -> list[dict[str, object]]:
    return [user_batch(f"u{n}", [custom_event(f"m{n}")]) for n in range(first, end)]


def test_serve_plans_in_its_workers_answers_as_before_and_stops_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            recording_emulator() as emulator,
            serving(tmp_path, emulator.url, service={"ingest_workers": 2, "log_level": "info"}) as service,
        ):
            assert service.process is not None
            workers = workers_of(service.process.pid)
            assert len(workers) == 2
            async with aiohttp.ClientSession() as session:
                for first in range(0, 40, 10):
                    assert await post_bulk(session, service.url, _batches(first, first + 10)) == 202
                bad = [user_batch("u99", [custom_event("m99")]), {"events": [{"event_type": 7}]}]
                async with session.post(
                    f"{service.url}/v2/bulkevents", json=bad, headers={"Authorization": basic_auth()}
                ) as response:
                    assert response.status == 400
                    assert (await response.json())["errors"][0]["pointer"] == "/1/events/0/event_type"

            async def delivered() -> bool:
                return Counter(emulator.unique_ids()) == Counter({f"m{n}": 1 for n in range(40)})

            await wait_until(delivered, 30.0, "every accepted event delivered once")
            assert await service.terminate() == 0
        assert not any(_command(pid) for pid in workers), "a planning worker outlived serve"
        lines = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines() if '"serving"' in line]
        assert lines[0]["planning_workers"] == 2

    run_async(scenario(), timeout_s=90.0)


def test_a_killed_worker_is_replaced_and_ingest_goes_on(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            recording_emulator() as emulator,
            serving(tmp_path, emulator.url, service={"ingest_workers": 1}) as service,
        ):
            assert service.process is not None
            (first,) = workers_of(service.process.pid)
            os.kill(first, signal.SIGKILL)

            async def replaced() -> bool:
                return any(pid != first for pid in workers_of(service.process.pid)) if service.process else False

            await wait_until(replaced, 15.0, "a new planning worker")
            async with aiohttp.ClientSession() as session:
                assert await post_bulk(session, service.url, _batches(0, 5)) == 202
            await wait_until(_async_ids(emulator, 5), 30.0, "the events delivered")
            assert await service.terminate() == 0
        log = (tmp_path / "serve.log").read_text()
        assert "a planning worker exited" in log

    run_async(scenario(), timeout_s=90.0)


def _async_ids(emulator: RecordingEmulator, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return sorted(set(emulator.unique_ids())) == sorted(f"m{n}" for n in range(count))

    return check


def test_sigterm_to_the_whole_process_group_still_stops_cleanly(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            recording_emulator() as emulator,
            serving(tmp_path, emulator.url, service={"ingest_workers": 2}) as service,
        ):
            assert service.process is not None
            workers = workers_of(service.process.pid)
            async with aiohttp.ClientSession() as session:
                assert await post_bulk(session, service.url, _batches(0, 5)) == 202
            for pid in workers:  # as systemd does for every process of the unit
                os.kill(pid, signal.SIGTERM)
            await asyncio.sleep(0.2)
            assert workers_of(service.process.pid) == workers, "a worker left on SIGTERM alone"
            assert await service.terminate() == 0
        assert not any(_command(pid) for pid in workers)

    run_async(scenario(), timeout_s=90.0)
