"""Several ``serve`` nodes on one PostgreSQL database: durable ingest by node count, delivery per account.

    .venv/bin/python bench/cluster.py [--part both|ingest|delivery] [--duration 15] [--runs 3]
        [--nodes 1,2,3] [--connections 16] [--delivery-duration 90] [--delivery-runs 2]

**Ingest** (issue 11): each run measures, one after the other, the SQLite single node (the
baseline, as ``bench/ingest.py`` runs it) and 1, 2 and 3 ``serve`` nodes sharing one fresh
PostgreSQL schema, each set-up with its own emulator at Klaviyo's default limits, then:

1. max: ``--connections`` closed-loop senders spread round-robin over the nodes post
   ``/v2/bulkevents`` requests of 10 batches x 10 events (every event distinct) for
   ``--duration`` seconds (``bench/ingest.py``'s ``closed_loop``);
2. paced: an open loop at half that rate, request n sent to node n mod N (``open_loop``, one
   per node at 1/N of the rate, started 1/rate apart); latency from each scheduled send time.

Prints each run, then medians and each set-up's ratio to the SQLite node of the same runs.
The load generator, the nodes, the emulator and PostgreSQL share this machine's cores, so the
CPU split during the max phase is printed too: the nodes, the emulator, this process (the load
generator), PostgreSQL (the store's sessions and the server's background processes) and the
rest of the machine's busy time (other processes: the machine is shared).

**Delivery** (per account, 3 nodes): two connections (accounts ``acme`` and ``beta``, their own
company ids and Events API keys) with ``POST /client/events`` limited to 20/s and 600/min in the
emulator (run in this process, counting answers per company) and in the connections. A backlog
of a minute of each account's limit is posted round-robin to the nodes, and batches keep coming
at twice the limit; for ``--delivery-duration`` seconds each account's accepted requests/s are
compared with its steady limit (10/s): goal >= 95% of it with < 1% of requests answered 429.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_delivery import Delivery, describe_delivery, run_delivery, summarise_delivery
from harness import (
    EVENTS_PER_BATCH,
    Child,
    bulk_bodies,
    cpu_seconds_of,
    machine_busy_seconds,
    median,
    start_emulator,
    start_serve,
    stop_on_sigterm,
    timed,
    write_config,
)
from ingest import BATCHES_PER_REQUEST, EVENTS_PER_REQUEST, Bodies, Phase, closed_loop, describe, open_loop
from pg import postgres_pids, postgres_schema, postgres_version

BASELINE = "sqlite x1"


class SetupRun(msgspec.Struct, kw_only=True):
    """One set-up's phases and where the CPU went during the max phase (cores)."""

    name: str
    max: Phase
    paced: Phase
    nodes_cores: float
    emulator_cores: float
    generator_cores: float
    postgres_cores: float
    other_cores: float


def merged(phases: list[Phase]) -> Phase:
    """The phases of several nodes run at once, as one."""
    statuses: Counter[int] = Counter()
    for phase in phases:
        statuses.update(phase.statuses)
    latencies = [latency for phase in phases for latency in phase.latencies]
    return Phase(statuses=statuses, seconds=max(phase.seconds for phase in phases), latencies=latencies)


async def spread_closed(urls: list[str], bodies: Bodies, duration_s: float, connections: int) -> Phase:
    """``connections`` closed-loop senders dealt round-robin over ``urls``."""
    shares = [connections // len(urls) + (i < connections % len(urls)) for i in range(len(urls))]
    loops = [closed_loop(url, bodies, duration_s, n) for url, n in zip(urls, shares, strict=True) if n]
    return merged(list(await asyncio.gather(*loops)))


async def spread_paced(urls: list[str], bodies: Bodies, events_per_s: float, duration_s: float) -> Phase:
    """An open loop at ``events_per_s`` whose requests go to ``urls`` in turn."""
    gap = EVENTS_PER_REQUEST / events_per_s

    async def node(index: int, url: str) -> Phase:
        await asyncio.sleep(index * gap)  # node i takes requests i, i + N, ...: round-robin
        return await open_loop(url, bodies, events_per_s / len(urls), duration_s)

    return merged(list(await asyncio.gather(*(node(i, url) for i, url in enumerate(urls)))))


async def start_nodes(
    stack: contextlib.ExitStack, workdir: Path, emulator_url: str, count: int, store: str
) -> list[Child]:
    """``count`` ``serve`` nodes on ``store`` (one config each), started together, all ready."""
    configs = [
        write_config(workdir, emulator_url, server_mode=True, name=f"node{i}", store=store) for i in range(count)
    ]
    return list(await asyncio.gather(*(start_serve(stack, path, port) for path, port in configs)))


async def run_setup(name: str, count: int, postgres: bool, args: argparse.Namespace, pool: list[bytes]) -> SetupRun:
    """A fresh emulator, store and ``count`` nodes; the max phase, then the paced one at half its rate."""
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        store = postgres_schema(stack) if postgres else str(workdir / "jobs.sqlite3")
        emulator = await start_emulator(stack, workdir, {}, keep_events=False)
        nodes = await start_nodes(stack, workdir, emulator.url, count, store)
        urls = [node.url for node in nodes]
        bodies = Bodies(pool, cycle=False)
        groups = [[node.pid for node in nodes], [emulator.pid], [os.getpid()]]
        before, busy = [cpu_seconds_of(pids) for pids in groups], machine_busy_seconds()
        server_before = server_cpu(store) if postgres else {}
        peak = await spread_closed(urls, bodies, args.duration, args.connections)
        after = [cpu_seconds_of(pids) for pids in groups]
        server_after = server_cpu(store) if postgres else {}
        cores = [(b - a) / peak.seconds for a, b in zip(before, after, strict=True)]
        # Sessions the nodes' pools opened during the phase count from 0.
        cores.append(sum(cpu - server_before.get(pid, 0.0) for pid, cpu in server_after.items()) / peak.seconds)
        other = (machine_busy_seconds() - busy) / peak.seconds - sum(cores)
        await asyncio.sleep(2)
        paced = await spread_paced(urls, bodies, peak.accepted_per_s / 2, args.duration)
        if bodies.next >= len(pool):
            print("  warning: the body pool ran out; raise --pool-events", file=sys.stderr)
        return SetupRun(
            name=name,
            max=peak,
            paced=paced,
            nodes_cores=cores[0],
            emulator_cores=cores[1],
            generator_cores=cores[2],
            postgres_cores=cores[3],
            other_cores=other,
        )


def server_cpu(store: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL process working for ``store``."""
    return {pid: cpu_seconds_of([pid]) for pid in postgres_pids(store)}


def setups(args: argparse.Namespace) -> list[tuple[str, int, bool]]:
    """(name, nodes, on PostgreSQL) of each set-up a run measures, the SQLite baseline first."""
    return [(BASELINE, 1, False)] + [(f"postgresql x{n}", n, True) for n in args.nodes]


def print_setup(run: SetupRun) -> None:
    """One set-up's figures in one run."""
    print(f"  {run.name:<14} max   {describe(run.max)}")
    print(f"  {'':<14} paced {describe(run.paced)}")
    print(
        f"  {'':<14} CPU during max (cores): nodes {run.nodes_cores:.2f}, PostgreSQL {run.postgres_cores:.2f},"
        f" emulator {run.emulator_cores:.2f}, load generator {run.generator_cores:.2f},"
        f" rest of the machine {run.other_cores:.2f}",
        flush=True,
    )


def print_medians(runs: list[list[SetupRun]]) -> None:
    """Per set-up: median max rate, its ratio to the SQLite node, median p50/p99 at half rate, CPU."""
    base = median([r.max.accepted_per_s for run in runs for r in run if r.name == BASELINE])
    for index, first in enumerate(runs[0]):
        same = [run[index] for run in runs]
        rate = median([r.max.accepted_per_s for r in same])
        print(
            f"  {first.name:<14} max {rate:9,.0f} ev/s (x{rate / base:.2f} of {BASELINE});"
            f" at half rate p50 {median([r.paced.p(50) for r in same]):6.1f} ms,"
            f" p99 {median([r.paced.p(99) for r in same]):6.1f} ms;"
            f" CPU: nodes {median([r.nodes_cores for r in same]):.2f},"
            f" PostgreSQL {median([r.postgres_cores for r in same]):.2f},"
            f" generator {median([r.generator_cores for r in same]):.2f},"
            f" emulator {median([r.emulator_cores for r in same]):.2f},"
            f" rest {median([r.other_cores for r in same]):.2f} cores"
        )
        print(f"  {'':<14} per run max: {', '.join(f'{r.max.accepted_per_s:,.0f}' for r in same)} ev/s")
        print(f"  {'':<14} {per_core(same)}")


def per_core(same: list[SetupRun]) -> str:
    """Events/s at max per core the nodes used, and per core PostgreSQL used (medians over runs)."""
    nodes = median([r.max.accepted_per_s / r.nodes_cores for r in same if r.nodes_cores > 0])
    text = f"per core at max: {nodes:,.0f} ev/s per node core"
    if any(r.postgres_cores > 0 for r in same):
        server = median([r.max.accepted_per_s / r.postgres_cores for r in same if r.postgres_cores > 0])
        text += f", {server:,.0f} ev/s per PostgreSQL core"
    return text


async def ingest_part(args: argparse.Namespace) -> None:
    """``--runs`` runs of every set-up; each run printed, then the medians."""
    with timed(f"generating {args.pool_events:,} events of distinct users"):
        pool = bulk_bodies(args.pool_events // EVENTS_PER_REQUEST, BATCHES_PER_REQUEST)
    runs: list[list[SetupRun]] = []
    for number in range(1, args.runs + 1):
        print(f"ingest run {number}:", flush=True)
        runs.append([])
        for name, count, postgres in setups(args):
            runs[-1].append(await run_setup(name, count, postgres, args, pool))
            print_setup(runs[-1][-1])
    print(
        f"\ningest, median of {args.runs} runs ({args.duration:g} s a phase, {args.connections} connections"
        f" spread over the nodes, {EVENTS_PER_BATCH * BATCHES_PER_REQUEST} events a request):"
    )
    print_medians(runs)


async def delivery_part(args: argparse.Namespace) -> None:
    """``--delivery-runs`` runs of the 3-node, two-account delivery; each run printed, then the medians."""
    results: list[Delivery] = []
    for number in range(1, args.delivery_runs + 1):
        results.append(await run_delivery(args.delivery_duration, args.delivery_nodes))
        print(f"delivery run {number}:\n{describe_delivery(results[-1])}", flush=True)
    print(f"\ndelivery, median of {args.delivery_runs} runs of {args.delivery_duration:g} s:")
    print(summarise_delivery(results))


async def main_async(args: argparse.Namespace) -> None:
    """Run the parts asked for."""
    print(f"machine: {os.cpu_count()} CPUs; PostgreSQL {postgres_version()}", flush=True)
    if args.part in ("both", "ingest"):
        await ingest_part(args)
    if args.part in ("both", "delivery"):
        await delivery_part(args)


def main() -> None:
    """Parse flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["both", "ingest", "delivery"], default="both")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per ingest phase")
    parser.add_argument("--runs", type=int, default=3, help="ingest runs")
    parser.add_argument("--nodes", type=lambda s: [int(n) for n in s.split(",")], default=[1, 2, 3])
    parser.add_argument("--connections", type=int, default=16, help="closed-loop senders in all")
    parser.add_argument("--pool-events", type=int, default=600_000, help="distinct events generated up front")
    parser.add_argument("--delivery-duration", type=float, default=90.0, help="seconds measured per delivery run")
    parser.add_argument("--delivery-runs", type=int, default=2)
    parser.add_argument("--delivery-nodes", type=int, default=3)
    args = parser.parse_args()
    stop_on_sigterm()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
