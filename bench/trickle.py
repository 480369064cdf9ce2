"""Trickle: single-event batches arrive faster than the account's bulk-job limit lets jobs leave.

    .venv/bin/python bench/trickle.py [--duration 150] [--rate 10] [--runs 2] [--src TREE]

Each run starts an emulator in this process, limited to 1 job/s and 4 jobs/min on
``POST /api/event-bulk-create-jobs`` (the connection's ``rate_limits`` say the same), with a
middleware that notes when each bulk job arrived and how many events it carried, and the real
``serve`` (server mode) as a child process. An open-loop sender posts one single-event batch
(``POST /v2/events``, a distinct user each) every 1/``--rate`` s for ``--duration`` s, noting
when each 202 came back (same clock as the emulator's), then ``serve`` is stopped.

Figures, each beside its ideal from the same run:

* events per bulk job, beside what arrives in one interval of the limiter (rate x interval);
* for each job, what was waiting at its send: events acknowledged (202) before the job reached
  the emulator minus events delivered by earlier jobs; the share of it the job carried
  (ideal 1, goal >= 0.9);
* events delivered / the ideal: every event acknowledged before the last job arrived.

``--src TREE`` runs ``serve`` from another source tree (a ``git worktree`` of an older commit).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import json
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from mparticle_klaviyo.delivery.ratelimit import derive_params
from mparticle_klaviyo.klaviyo.emulator import Emulator, EmulatorConfig
from mparticle_klaviyo.klaviyo.limits import RateLimit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import AUTH, BENCH, median, python_path, start_serve, stop_on_sigterm, tree_name, write_config

BULK_PATH = "/api/event-bulk-create-jobs"
LIMITS = {f"POST {BULK_PATH}": (1, 4)}
GOAL_SHARE = 0.9
HEADERS = {"Authorization": AUTH, "Content-Type": "application/json"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Job(msgspec.Struct, frozen=True):
    """One bulk job as the emulator saw it."""

    at: float  # time.monotonic() at arrival
    status: int
    events: int


class Sent(msgspec.Struct, frozen=True):
    """What one job carried and what was waiting when it arrived."""

    at: float  # seconds since the first post
    events: int
    waiting: int

    @property
    def share(self) -> float:
        """The share of what was waiting that the job carried."""
        return self.events / max(1, self.waiting)


class Result(msgspec.Struct, kw_only=True):
    """One run's figures."""

    posted: int
    statuses: dict[int, int]
    jobs: list[Sent]
    answers: dict[int, int]  # status -> bulk jobs answered with it
    ideal: int  # events acknowledged before the last job arrived
    recorded: int  # events the emulator recorded
    refused: list[str]  # the emulator's error answers other than 429: status, code, detail
    first_jobs: list[tuple[float, int, int]]  # (seconds since the first post, status, events) of the first 4 jobs

    @property
    def delivered(self) -> int:
        """Events carried by accepted jobs."""
        return sum(job.events for job in self.jobs)

    @property
    def events_per_job(self) -> float:
        """Median events per accepted job (the first one leaves at once with what waits then)."""
        return median([job.events for job in self.jobs])

    @property
    def min_share(self) -> float:
        """The smallest share of what was waiting that a job carried."""
        return min((job.share for job in self.jobs), default=float("nan"))

    @property
    def median_share(self) -> float:
        """The median share of what was waiting that a job carried."""
        return median([job.share for job in self.jobs])

    @property
    def delivered_share(self) -> float:
        """Events delivered over the ideal."""
        return self.delivered / max(1, self.ideal)


# ----------------------------------------------------------------------------- emulator


def _bulk_events(body: bytes) -> int:
    """Events in an ``event-bulk-create-jobs`` body (0 when it is not one)."""
    try:
        entries = json.loads(body)["data"]["attributes"]["events-bulk-create"]["data"]
        return sum(len(entry["attributes"]["events"]["data"]) for entry in entries)
    except (ValueError, KeyError, TypeError):
        return 0


def recording_app(emulator: Emulator, jobs: list[Job]) -> web.Application:
    """The emulator's app, noting every bulk event job's arrival, answer and events."""

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != BULK_PATH:
            return await handler(request)
        at = time.monotonic()
        events = _bulk_events(await request.read())
        response = await handler(request)
        jobs.append(Job(at, response.status, events))
        return response

    app = emulator.app()
    app.middlewares.append(record)
    return app


@contextlib.asynccontextmanager
async def recording_emulator(jobs: list[Job]) -> AsyncIterator[tuple[Emulator, str]]:
    """An emulator in this loop, limited by ``LIMITS``, on a free loopback port; yields (emulator, url)."""
    emulator = Emulator(EmulatorConfig(rate_limits=dict(LIMITS), max_events_kept=0))
    runner = web.AppRunner(recording_app(emulator, jobs), access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    try:
        yield emulator, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()


# ----------------------------------------------------------------------------- load


def trickle_batch(n: int) -> bytes:
    """User ``n``'s batch: one custom event (one Klaviyo event), its own profile."""
    event = {
        "event_type": "custom_event",
        "data": {
            "event_name": "Viewed Item",
            "custom_event_type": "navigation",
            "source_message_id": f"trickle-{n}",
            "timestamp_unixtime_ms": int(time.time() * 1000),
            "custom_attributes": {"item": f"i-{n}"},
        },
    }
    batch = {
        "environment": "production",
        "device_info": {"platform": "iOS"},
        "user_identities": {"email": f"trickle{n}@example.com", "customer_id": f"t-{n}"},
        "events": [event],
    }
    return json.dumps(batch).encode()


async def post_one(session: aiohttp.ClientSession, url: str, n: int, acks: list[float], statuses: Counter[int]) -> None:
    """Post batch ``n``; a 202 notes when its answer came back."""
    try:
        async with session.post(url + "/v2/events", data=trickle_batch(n), headers=HEADERS) as response:
            await response.read()
            statuses[response.status] += 1
            if response.status == 202:
                acks.append(time.monotonic())
    except (aiohttp.ClientError, TimeoutError):
        statuses[0] += 1


async def trickle(url: str, rate: float, duration_s: float) -> tuple[list[float], Counter[int], float]:
    """Post ``rate`` batches a second for ``duration_s`` (open loop); (202 times, statuses, start)."""
    acks: list[float] = []
    statuses: Counter[int] = Counter()
    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        for n in range(int(rate * duration_s)):
            await asyncio.sleep(max(0.0, start + n / rate - time.monotonic()))
            tasks.append(asyncio.create_task(post_one(session, url, n, acks, statuses)))
        await asyncio.gather(*tasks)
    return sorted(acks), statuses, start


# ----------------------------------------------------------------------------- a run


def analyse(jobs: list[Job], acks: list[float], start: float) -> list[Sent]:
    """What each accepted job carried against what was waiting when it arrived."""
    sent: list[Sent] = []
    delivered = 0
    for job in sorted(jobs, key=lambda j: j.at):
        if job.status != 202:
            continue
        waiting = bisect.bisect_left(acks, job.at) - delivered
        sent.append(Sent(job.at - start, job.events, waiting))
        delivered += job.events
    return sent


async def run(args: argparse.Namespace) -> Result:
    """One trickle against a fresh ``serve`` and emulator."""
    jobs: list[Job] = []
    with tempfile.TemporaryDirectory(prefix="bench-trickle-") as tmp, contextlib.ExitStack() as stack:
        async with recording_emulator(jobs) as (emulator, url):
            config, port = write_config(Path(tmp), url, server_mode=True, rate_limits=LIMITS, shutdown_timeout_s=5.0)
            with python_path(args.src):
                serve = await start_serve(stack, config, port)
            acks, statuses, start = await trickle(serve.url, args.rate, args.duration)
            await asyncio.to_thread(serve.stop)
            sent = analyse(jobs, acks, start)
            last = max((job.at for job in jobs if job.status == 202), default=start)
            return Result(
                posted=len(acks),
                statuses=dict(statuses),
                jobs=sent,
                answers=dict(Counter(job.status for job in jobs)),
                ideal=bisect.bisect_left(acks, last),
                recorded=emulator.state.events_recorded,
                refused=[refusal(entry) for entry in emulator.state.rejected if entry.get("status") != 429],
                first_jobs=[(job.at - start, job.status, job.events) for job in sorted(jobs, key=lambda j: j.at)[:4]],
            )


def refusal(entry: dict[str, Any]) -> str:
    """One error answer of the emulator, in short."""
    return f"{entry.get('status')} {entry.get('code')}: {str(entry.get('detail'))[:200]}"


def job_interval_s() -> float:
    """Seconds between two jobs at the limiter's steady rate for ``LIMITS``."""
    per_second, per_minute = LIMITS[f"POST {BULK_PATH}"]
    return 1.0 / derive_params(RateLimit(per_second, per_minute)).steady.rate


def describe(result: Result, rate: float) -> str:
    """One run's figures, beside their ideals."""
    shares = " ".join(f"{job.events}/{job.waiting}" for job in result.jobs)
    return (
        f"posted {result.posted:,} (answers {result.statuses}); bulk jobs {result.answers};"
        f" events per job (median) {result.events_per_job:,.1f} (one limiter interval of arrivals:"
        f" {rate * job_interval_s():,.1f}); share of what was waiting: median {result.median_share:.3f},"
        f" min {result.min_share:.3f} (ideal 1); delivered {result.delivered:,} of the ideal {result.ideal:,}"
        f" = {result.delivered_share:.3f} (emulator recorded {result.recorded:,})\n"
        f"    carried/waiting per job: {shares}"
        + "".join(f"\n    refused: {line}" for line in result.refused)
        + "\n    first jobs (s, status, events): "
        + " ".join(f"({at:.2f}, {status}, {events})" for at, status, events in result.first_jobs)
    )


async def main_async(args: argparse.Namespace) -> None:
    """``--runs`` runs; each run's figures and the medians."""
    print(
        f"serve from {args.src} ({tree_name(args.src)}); {args.rate:g} single-event batches/s for"
        f" {args.duration:g} s; {BULK_PATH} limited to {LIMITS[f'POST {BULK_PATH}']} per s/min"
        f" (limiter: one job per {job_interval_s():.2f} s)",
        flush=True,
    )
    results: list[Result] = []
    for number in range(1, args.runs + 1):
        results.append(await run(args))
        print(f"run {number}: {describe(results[-1], args.rate)}", flush=True)
    met = median([r.median_share for r in results]) >= GOAL_SHARE
    print(
        f"\nmedian of {args.runs} runs: events per job {median([r.events_per_job for r in results]):,.1f}"
        f" (ideal {args.rate * job_interval_s():,.1f}); share of what was waiting"
        f" {median([r.median_share for r in results]):.3f} (min over jobs"
        f" {median([r.min_share for r in results]):.3f}; goal >= {GOAL_SHARE}: {'met' if met else 'NOT MET'});"
        f" delivered / ideal {median([r.delivered_share for r in results]):.3f}"
    )


def main() -> None:
    """Parse flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=150.0, help="seconds of posting per run")
    parser.add_argument("--rate", type=float, default=10.0, help="single-event batches per second")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--src", type=Path, default=BENCH.parent, help="source tree of serve (default: this one)")
    args = parser.parse_args()
    args.src = args.src.resolve()
    stop_on_sigterm()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
