"""kill -9 the real ``serve`` process again and again while it ingests and delivers: nothing is lost.

The service runs as a subprocess (``python -m mparticle_klaviyo serve``) against the strict
emulator served from this test's event loop. Senders post Events API bulk requests the whole
time (retrying, as mParticle does, until they get a 202); a killer SIGKILLs the service at random
moments and restarts it. At the end every event that got a 202 must be recorded by the emulator
exactly once, and the job store must be empty. Reproduce a run with ``MPK_CRASH_SEED=<seed>``.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.service.e2e_helpers import (
    ServeProcess,
    custom_event,
    free_port,
    post_bulk,
    run_async,
    start_recording_emulator,
    user_batch,
    write_service_config,
)

KILLS = 6
SENDERS = 3
REQUESTS_PER_SENDER = 60
BATCHES_PER_REQUEST = 10
EVENTS_PER_BATCH = 2


class Traffic:
    """What the senders posted and which events the service acknowledged with a 202."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.sent: set[str] = set()
        self.acked: set[str] = set()
        self.refused = 0

    def request(self, sender: int, number: int) -> tuple[list[dict[str, Any]], list[str]]:
        batches: list[dict[str, Any]] = []
        ids: list[str] = []
        for b in range(BATCHES_PER_REQUEST):
            # A few profiles per sender, so one profile's events are spread over many requests.
            user = f"s{sender}-u{(number * BATCHES_PER_REQUEST + b) % 17}"
            events = [f"x{self.seed}-s{sender}-r{number}-b{b}-e{e}" for e in range(EVENTS_PER_BATCH)]
            batches.append(user_batch(user, [custom_event(event) for event in events]))
            ids.extend(events)
        return batches, ids

    async def send_all(self, sender: int, service: ServeProcess) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            for number in range(REQUESTS_PER_SENDER):
                batches, ids = self.request(sender, number)
                self.sent.update(ids)
                while (status := await post_bulk(session, service.url, batches)) != 202:
                    assert status in (0, 429, 503), f"seed {self.seed}: unexpected ingest answer {status}"
                    self.refused += 1
                    await asyncio.sleep(0.05)  # the service is down or restarting: try again, as mParticle does
                self.acked.update(ids)


async def killer(service: ServeProcess, rng: random.Random, store_path: Path) -> list[int]:
    """SIGKILL the service at random moments and restart it, KILLS times; the backlog at each kill."""
    backlogs: list[int] = []
    for _ in range(KILLS):
        await asyncio.sleep(rng.uniform(0.2, 1.0))
        backlogs.append(_backlog(store_path))
        await service.kill()
        await asyncio.sleep(rng.uniform(0.0, 0.3))
        await service.start()
    return backlogs


def _backlog(store_path: Path) -> int:
    store = SqliteJobStore(store_path)
    try:
        return store.backlog()
    finally:
        store.close()


async def wait_for_empty_store(store_path: Path, traffic: Traffic) -> None:
    """Poll the store file, as another process would, until nothing is ready, leased or dead."""
    deadline = time.monotonic() + 30
    while True:
        store = SqliteJobStore(store_path)
        try:
            left = store.counts()
        finally:
            store.close()
        if not left:
            return
        assert time.monotonic() < deadline, f"seed {traffic.seed}: store not empty after 30 s: {left}"
        await asyncio.sleep(0.25)


def test_every_acknowledged_event_is_recorded_exactly_once_despite_repeated_kill_9(tmp_path: Path) -> None:
    seed = int(os.environ.get("MPK_CRASH_SEED", random.randrange(2**32)))
    print(f"crash test seed: {seed} (rerun with MPK_CRASH_SEED={seed})")
    rng = random.Random(seed)

    async def scenario() -> None:
        emulator = await start_recording_emulator()
        # Slow some answers so that kills land while requests are in flight.
        emulator.add_fault({"delay_ms": 30, "probability": 0.3})
        port = free_port()
        config = write_service_config(tmp_path, emulator.url, port, service={"lease_s": 2.0})
        service = ServeProcess(config, port, tmp_path / "serve.log")
        traffic = Traffic(seed)
        await service.start()
        try:
            kill_task = asyncio.create_task(killer(service, rng, tmp_path / "jobs.sqlite3"))
            await asyncio.gather(*(traffic.send_all(n, service) for n in range(SENDERS)))
            backlogs = await kill_task
            await wait_for_empty_store(tmp_path / "jobs.sqlite3", traffic)
            assert await service.terminate() == 0
        finally:
            await service.ensure_stopped()
            await emulator.close()
        recorded = Counter(emulator.unique_ids())
        state = emulator.state()
        print(
            f"seed {seed}: {len(backlogs)} kills with {backlogs} jobs to deliver; "
            f"{len(traffic.acked)} events acknowledged, {len(recorded)} recorded, "
            f"{state['duplicates_dropped']} resends deduplicated by Klaviyo, {traffic.refused} posts retried"
        )
        assert len(backlogs) >= 5
        assert sum(1 for backlog in backlogs if backlog > 0) >= 3, f"seed {seed}: most kills must hit work in flight"
        assert len(traffic.acked) == SENDERS * REQUESTS_PER_SENDER * BATCHES_PER_REQUEST * EVENTS_PER_BATCH
        missing = traffic.acked - set(recorded)
        assert not missing, (
            f"seed {seed}: {len(missing)} acknowledged events never reached Klaviyo, e.g. {sorted(missing)[:5]}"
        )
        twice = [unique_id for unique_id, count in recorded.items() if count > 1]
        assert not twice, f"seed {seed}: recorded more than once: {twice[:5]}"
        assert set(recorded) <= traffic.sent, f"seed {seed}: recorded events nobody sent"
        assert state["rejected"] == [] and state["violations"] == [], f"seed {seed}"

    run_async(scenario(), timeout_s=90)
