"""Durable ingest: events/s that ``serve`` accepts (202) at most, and accept latency at half that rate.

    .venv/bin/python bench/ingest.py [--duration 20] [--runs 3] [--connections 16] [--mode server]

Each run starts a fresh ``serve`` (temp config, temp SQLite store, synchronous=FULL) delivering
to the emulator at Klaviyo's default (XL) limits in the same process, as in production, then:

1. max: ``--connections`` closed-loop senders post ``/v2/bulkevents`` requests of 10 batches x 10
   events (``bench/workload.py``, every user and event id distinct) for ``--duration`` seconds;
2. paced: an open-loop sender posts at half the rate found in 1 for ``--duration`` seconds;
   latency runs from each request's scheduled send time to its answer (no coordinated omission).

Baseline, same run, same load generator: a null aiohttp server that reads the body and answers 202
(``bench/servers.py null``), i.e. this machine's HTTP ceiling. Prints per-run figures and medians.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    AUTH,
    EVENTS_PER_BATCH,
    bulk_bodies,
    children_of,
    cpu_seconds,
    cpu_seconds_of,
    free_port,
    fsync_ms,
    get_json,
    median,
    metrics,
    percentile,
    start_child,
    start_emulator,
    start_serve,
    stop_on_sigterm,
    timed,
    write_config,
)

BATCHES_PER_REQUEST = 10
EVENTS_PER_REQUEST = BATCHES_PER_REQUEST * EVENTS_PER_BATCH
GOAL_EVENTS_PER_S = 20_000
GOAL_P99_MS = 100.0
HEADERS = {"Authorization": AUTH, "Content-Type": "application/json"}


class Phase(msgspec.Struct, kw_only=True):
    """One load phase: answers by status, wall time, latencies of 202s (seconds)."""

    statuses: Counter[int]
    seconds: float
    latencies: list[float]

    @property
    def accepted_per_s(self) -> float:
        """Events answered 202 per second."""
        return self.statuses[202] * EVENTS_PER_REQUEST / self.seconds

    def p(self, q: float) -> float:
        """Latency percentile in milliseconds."""
        return percentile(self.latencies, q) * 1000


class Bodies:
    """Request bodies handed out in order; ``cycle`` reuses them (the null server keeps nothing)."""

    def __init__(self, bodies: list[bytes], cycle: bool) -> None:
        self.bodies = bodies
        self.cycle = cycle
        self.next = 0

    def take(self) -> bytes | None:
        """The next body, None when a non-cycling pool is used up."""
        if self.next >= len(self.bodies) and not self.cycle:
            return None
        body = self.bodies[self.next % len(self.bodies)]
        self.next += 1
        return body


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    """POST one bulk request; the status (0: no answer)."""
    try:
        async with session.post(url + "/v2/bulkevents", data=body, headers=HEADERS) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


def session(connections: int) -> aiohttp.ClientSession:
    """A keep-alive client with at most ``connections`` connections."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections), timeout=aiohttp.ClientTimeout(total=30)
    )


async def closed_loop(url: str, bodies: Bodies, duration_s: float, connections: int) -> Phase:
    """``connections`` senders, each posting its next request as soon as the last is answered."""
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    deadline = time.monotonic() + duration_s

    async def sender(client: aiohttp.ClientSession) -> None:
        while time.monotonic() < deadline and (body := bodies.take()) is not None:
            sent = time.monotonic()
            status = await post(client, url, body)
            statuses[status] += 1
            if status == 202:
                latencies.append(time.monotonic() - sent)

    async with session(connections) as client:
        start = time.monotonic()
        await asyncio.gather(*(sender(client) for _ in range(connections)))
        return Phase(statuses=statuses, seconds=time.monotonic() - start, latencies=latencies)


async def open_loop(url: str, bodies: Bodies, events_per_s: float, duration_s: float) -> Phase:
    """Requests sent on a fixed schedule whatever the answers; latency from the scheduled time."""
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    interval = EVENTS_PER_REQUEST / events_per_s
    loop = asyncio.get_running_loop()

    async def one(client: aiohttp.ClientSession, body: bytes, due: float) -> None:
        status = await post(client, url, body)
        statuses[status] += 1
        if status == 202:
            latencies.append(loop.time() - due)

    async with session(256) as client:
        start = loop.time() + 0.05
        tasks: list[asyncio.Task[None]] = []
        for n in range(int(duration_s / interval)):
            due = start + n * interval
            await asyncio.sleep(max(0.0, due - loop.time()))
            body = bodies.take()
            if body is None:
                break
            tasks.append(asyncio.create_task(one(client, body, due)))
        if not tasks:
            raise SystemExit("the body pool ran out before the paced phase: raise --pool-events")
        await asyncio.wait(tasks, timeout=60)
        return Phase(statuses=statuses, seconds=loop.time() - start, latencies=latencies)


class ServiceRun(msgspec.Struct, kw_only=True):
    """One run against ``serve``."""

    max: Phase
    paced: Phase
    max_cores: float
    worker_cores: float  # serve's planning worker processes (ingest_workers), not in max_cores
    emulator_cores: float
    accepted_jobs: float
    delivered_jobs: float
    delivered_events: int
    seconds: float
    backlog_end: float
    fsync_p50_ms: float
    fsync_p99_ms: float


async def run_service(args: argparse.Namespace, pool: list[bytes]) -> ServiceRun:
    """Fresh emulator, store and ``serve``; the max phase, then the paced phase at half its rate."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        fsync_p50, fsync_p99 = fsync_ms(workdir)
        emulator = await start_emulator(stack, workdir, {}, keep_events=False)
        config, port = write_config(workdir, emulator.url, server_mode=args.mode == "server")
        serve = await start_serve(stack, config, port)
        bodies = Bodies(pool, cycle=False)
        started, cpu, emulator_cpu = time.monotonic(), cpu_seconds(serve.pid), cpu_seconds(emulator.pid)
        workers = children_of(serve.pid)
        workers_cpu = cpu_seconds_of(workers)
        peak = await closed_loop(serve.url, bodies, args.duration, args.connections)
        cores = (cpu_seconds(serve.pid) - cpu) / peak.seconds
        worker_cores = (cpu_seconds_of(workers) - workers_cpu) / peak.seconds
        emulator_cores = (cpu_seconds(emulator.pid) - emulator_cpu) / peak.seconds
        await asyncio.sleep(2)
        paced = await open_loop(serve.url, bodies, peak.accepted_per_s / 2, args.duration)
        seconds = time.monotonic() - started
        readings = await metrics(serve.url)
        counters = await get_json(emulator.url + "/_bench/counters")
        if bodies.next >= len(pool):
            print("  warning: the body pool ran out; raise --pool-events", file=sys.stderr)
        return ServiceRun(
            max=peak,
            paced=paced,
            max_cores=cores,
            worker_cores=worker_cores,
            emulator_cores=emulator_cores,
            accepted_jobs=readings.get("mpk_jobs_queued_total", 0.0),
            delivered_jobs=readings.get("mpk_jobs_delivered_total", 0.0),
            delivered_events=counters["events_recorded"],
            seconds=seconds,
            backlog_end=readings.get("mpk_jobs_queued_total", 0.0)
            - readings.get("mpk_jobs_delivered_total", 0.0)
            - readings.get("mpk_jobs_dead_lettered_total", 0.0),
            fsync_p50_ms=fsync_p50,
            fsync_p99_ms=fsync_p99,
        )


async def run_null(args: argparse.Namespace, pool: list[bytes], paced_events_per_s: float) -> tuple[Phase, Phase]:
    """The same two phases against the null server (the paced one at the service's paced rate)."""
    with tempfile.TemporaryDirectory(prefix="bench-null-") as tmp, contextlib.ExitStack() as stack:
        port = free_port()
        server = start_child(
            stack, [str(Path(__file__).parent / "servers.py"), "null", str(port)], Path(tmp) / "null.log", port
        )
        await server.wait_ready("/readyz")
        bodies = Bodies(pool, cycle=True)
        peak = await closed_loop(server.url, bodies, args.duration, args.connections)
        await asyncio.sleep(2)
        paced = await open_loop(server.url, bodies, paced_events_per_s, args.duration)
        return peak, paced


def describe(phase: Phase) -> str:
    """Rate, answers and latency of one phase."""
    others = {s: n for s, n in phase.statuses.items() if s != 202}
    return f"{phase.accepted_per_s:9,.0f} ev/s accepted, p50 {phase.p(50):6.1f} ms, p99 {phase.p(99):6.1f} ms" + (
        f", non-202 answers {others}" if others else ""
    )


async def main_async(args: argparse.Namespace) -> None:
    """Run, print per-run figures and medians."""
    with timed(f"generating {args.pool_events:,} events of distinct users"):
        pool = bulk_bodies(args.pool_events // EVENTS_PER_REQUEST, BATCHES_PER_REQUEST)
    runs: list[tuple[ServiceRun, Phase, Phase]] = []
    for number in range(1, args.runs + 1):
        service = await run_service(args, pool)
        null_max, null_paced = await run_null(args, pool, service.paced.accepted_per_s)
        runs.append((service, null_max, null_paced))
        print_run(number, service, null_max, null_paced)
    serve_max = median([s.max.accepted_per_s for s, _, _ in runs])
    ceiling = median([n.accepted_per_s for _, n, _ in runs])
    p99 = median([s.paced.p(99) for s, _, _ in runs])
    print(
        f"\nmedian of {args.runs} runs ({args.duration:g} s a phase, {args.connections} connections, {args.mode} mode):"
    )
    print(
        f"  max accepted: serve {serve_max:,.0f} ev/s, null {ceiling:,.0f} ev/s, serve/null {serve_max / ceiling:.3f}"
    )
    print(
        f"  at half rate: serve p50 {median([s.paced.p(50) for s, _, _ in runs]):.1f} ms, p99 {p99:.1f} ms;"
        f" null p50 {median([n.p(50) for _, _, n in runs]):.1f} ms, p99 {median([n.p(99) for _, _, n in runs]):.1f} ms"
    )
    print(
        f"  CPU during max: serve {median([s.max_cores for s, _, _ in runs]):.2f} cores,"
        f" its planning workers {median([s.worker_cores for s, _, _ in runs]):.2f},"
        f" emulator {median([s.emulator_cores for s, _, _ in runs]):.2f} cores (of 2)"
    )
    print(f"  delivery kept up: {'yes' if all(s.backlog_end <= 0 for s, _, _ in runs) else 'no'}")
    print(
        f"  goal >= {GOAL_EVENTS_PER_S:,} ev/s: {'met' if serve_max >= GOAL_EVENTS_PER_S else 'NOT MET'};"
        f" goal p99 <= {GOAL_P99_MS:g} ms at half rate: {'met' if p99 <= GOAL_P99_MS else 'NOT MET'}"
    )


def print_run(number: int, service: ServiceRun, null_max: Phase, null_paced: Phase) -> None:
    """One run's figures."""
    ratio = service.max.accepted_per_s / null_max.accepted_per_s
    print(f"run {number}:")
    print(
        f"  serve max     {describe(service.max)}; CPU: serve {service.max_cores:.2f} cores,"
        f" workers {service.worker_cores:.2f},"
        f" emulator {service.emulator_cores:.2f}"
    )
    print(f"  null  max     {describe(null_max)}  (serve/null {ratio:.3f})")
    print(f"  serve paced   {describe(service.paced)}")
    print(f"  null  paced   {describe(null_paced)}")
    print(
        f"  delivery      {service.delivered_jobs / service.seconds:,.0f} jobs/s delivered"
        f" ({service.delivered_events / service.seconds:,.0f} Klaviyo events/s) vs"
        f" {service.accepted_jobs / service.seconds:,.0f} jobs/s queued;"
        f" backlog at the end {service.backlog_end:,.0f} jobs"
    )
    print(f"  disk          4 KiB append + fsync p50 {service.fsync_p50_ms:.2f} ms, p99 {service.fsync_p99_ms:.2f} ms")
    sys.stdout.flush()


def main() -> None:
    """Parse flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--mode", choices=["server", "client"], default="server", help="Klaviyo API of the connection")
    parser.add_argument("--pool-events", type=int, default=900_000, help="distinct events generated up front")
    args = parser.parse_args()
    stop_on_sigterm()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
