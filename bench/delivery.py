"""Delivery at a rate limit: the share of Klaviyo's steady limit used, the share of 429s, and no loss.

    .venv/bin/python bench/delivery.py [--mode both|client|server] [--duration 130] [--runs 2] [--lease-s 120]

Each run: the emulator and the connection get the same small limit on one endpoint (client mode
``POST /client/events`` 20/s and 600/min, i.e. 10/s steady; server mode
``POST /api/event-bulk-create-jobs`` 2/s and 30/min, i.e. 30 x 1000 events a minute at most), a
backlog of ``bench/workload.py`` batches larger than the run can drain is queued with
``mparticle-klaviyo replay --enqueue``, and ``serve`` delivers it for ``--duration`` seconds.

Baseline: the limit itself. Utilisation = events the emulator recorded per minute / (steady
requests per minute x events a request can carry: 1 in client mode, 1000 in server mode). After
a graceful stop every queued event must be recorded by the emulator or still be in the store.

Two more delivery scenarios have scripts of their own: ``bench/trickle.py`` (single-event batches
arriving faster than the bulk-job limit lets jobs leave: what each job carries) and
``bench/backfill.py`` (``replay`` of a large export at Klaviyo's XL limits: wall time against
the minimum the limits allow).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from mparticle_klaviyo.jobs.plan import unique_id_of

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    enqueue_file,
    get_json,
    median,
    start_emulator,
    start_serve,
    stop_on_sigterm,
    store_rows,
    timed,
    write_batches,
    write_config,
)

EVENTS_PER_BATCH_AT_KLAVIYO = 12  # a purchase of 2 products is 3 Klaviyo events
GOAL_UTILISATION = 0.95
GOAL_429_SHARE = 0.01


class Scenario(msgspec.Struct, frozen=True):
    """One limited endpoint and how many events one of its requests can carry."""

    mode: str
    endpoint: str
    per_second: int
    per_minute: int
    events_per_request: int

    @property
    def path(self) -> str:
        """The endpoint's URL path."""
        return self.endpoint.split(" ", 1)[1]

    @property
    def events_per_minute(self) -> int:
        """The most events the steady limit lets through in a minute."""
        return self.per_minute * self.events_per_request


SCENARIOS = {
    "client": Scenario("client", "POST /client/events", 20, 600, 1),
    "server": Scenario("server", "POST /api/event-bulk-create-jobs", 2, 30, 1000),
}


class Result(msgspec.Struct, kw_only=True):
    """One run's measurements."""

    seconds: float
    recorded: int
    requests: dict[str, int]
    queued_events: int
    queued_subscriptions: int
    lost_events: int
    left_in_store: int
    dead: int
    duplicates: int
    subscriptions: int

    def utilisation(self, scenario: Scenario) -> float:
        """Events recorded per minute over the steady limit's events per minute."""
        return self.recorded / self.seconds * 60 / scenario.events_per_minute

    @property
    def share_429(self) -> float:
        """429 answers over all answers of the limited endpoint."""
        return self.requests.get("429", 0) / max(1, sum(self.requests.values()))

    @property
    def events_per_request(self) -> float:
        """Events recorded per accepted request of the limited endpoint."""
        return self.recorded / max(1, self.requests.get("202", 0))


async def run(scenario: Scenario, args: argparse.Namespace) -> Result:
    """Queue a backlog, deliver it for ``args.duration`` seconds, stop, account for every event."""
    limits = {scenario.endpoint: (scenario.per_second, scenario.per_minute)}
    # Three times what the limit lets through in the run, so the backlog never runs dry.
    batches = math.ceil(3 * scenario.events_per_minute * args.duration / 60 / EVENTS_PER_BATCH_AT_KLAVIYO)
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        emulator = await start_emulator(stack, workdir, limits, keep_events=True)
        config, port = write_config(
            workdir,
            emulator.url,
            server_mode=scenario.mode == "server",
            rate_limits=limits,
            lease_s=args.lease_s,
            shutdown_timeout_s=5.0,
        )
        with timed(f"queueing {batches:,} batches"):
            write_batches(workdir / "backlog.jsonl", range(batches))
            print(f"  {enqueue_file(config, workdir / 'backlog.jsonl')}", file=sys.stderr)
        queued = store_rows(workdir / "jobs.sqlite3")
        serve = await start_serve(stack, config, port)
        start = time.monotonic()
        before = await get_json(emulator.url + "/_bench/counters")
        await asyncio.sleep(args.duration)
        after = await get_json(emulator.url + "/_bench/counters")
        seconds = time.monotonic() - start
        serve.stop()
        final = await get_json(emulator.url + "/_bench/counters?ids=1")
        return account(scenario, before, after, final, seconds, queued, store_rows(workdir / "jobs.sqlite3"))


def account(
    scenario: Scenario,
    before: dict[str, Any],
    after: dict[str, Any],
    final: dict[str, Any],
    seconds: float,
    queued: list[tuple[str, str, int]],
    left: list[tuple[str, str, int]],
) -> Result:
    """Compare the counters over the run; check that no queued event vanished."""
    recorded_ids = set(final["unique_ids"])
    left_keys = {key for _, key, _ in left}
    queued_events = [key for kind, key, _ in queued if kind == "event"]
    # A job's key carries the unique_id Klaviyo records for its (first) event.
    path_before = before["statuses"].get(scenario.path, {})
    path_after = after["statuses"].get(scenario.path, {})
    return Result(
        seconds=seconds,
        recorded=after["events_recorded"] - before["events_recorded"],
        requests={status: n - path_before.get(status, 0) for status, n in path_after.items()},
        queued_events=len(queued_events),
        queued_subscriptions=len(queued) - len(queued_events),
        lost_events=sum(1 for key in queued_events if unique_id_of(key) not in recorded_ids and key not in left_keys),
        left_in_store=len(left),
        dead=sum(1 for _, _, state in left if state == 3),
        duplicates=final["duplicates_dropped"],
        subscriptions=final["subscriptions"],
    )


def describe(scenario: Scenario, result: Result) -> str:
    """One run's figures."""
    limit = f"{scenario.per_second}/s {scenario.per_minute}/min"
    return (
        f"{scenario.mode} ({scenario.endpoint} at {limit}): {result.recorded:,} events in {result.seconds:.0f} s ="
        f" {result.recorded / result.seconds * 60:,.0f}/min of {scenario.events_per_minute:,}/min ->"
        f" utilisation {result.utilisation(scenario):.3f}; answers {result.requests}"
        f" (429 share {result.share_429:.4f}); {result.events_per_request:,.0f} events per request;"
        f" queued {result.queued_events:,} event jobs + {result.queued_subscriptions:,} subscription jobs,"
        f" left in store {result.left_in_store:,} (dead {result.dead}), lost {result.lost_events},"
        f" duplicates dropped by Klaviyo {result.duplicates}"
    )


async def main_async(args: argparse.Namespace) -> None:
    """Run each scenario ``--runs`` times; print each run and the medians."""
    modes = ["client", "server"] if args.mode == "both" else [args.mode]
    summary: list[str] = []
    for mode in modes:
        scenario = SCENARIOS[mode]
        results: list[Result] = []
        for number in range(1, args.runs + 1):
            results.append(await run(scenario, args))
            print(f"run {number}: {describe(scenario, results[-1])}", flush=True)
        utilisation = median([r.utilisation(scenario) for r in results])
        share_429 = median([r.share_429 for r in results])
        lost = sum(r.lost_events for r in results)
        met = utilisation >= GOAL_UTILISATION and share_429 < GOAL_429_SHARE and lost == 0
        summary.append(
            f"  {mode}: utilisation {utilisation:.3f} (limit = 1), 429 share {share_429:.4f},"
            f" events per request {median([r.events_per_request for r in results]):,.0f}, lost {lost}"
            f" -> goal (>= {GOAL_UTILISATION:.0%} used, < {GOAL_429_SHARE:.0%} 429s, no loss)"
            f" {'met' if met else 'NOT MET'}"
        )
    print(f"\nmedian of {args.runs} runs of {args.duration:g} s (lease_s {args.lease_s:g}):")
    print("\n".join(summary))


def main() -> None:
    """Parse flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["both", "client", "server"], default="both")
    parser.add_argument("--duration", type=float, default=130.0, help="seconds of delivery per run")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--lease-s", type=float, default=120.0, help="the service's lease_s (its default: 120)")
    args = parser.parse_args()
    stop_on_sigterm()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
