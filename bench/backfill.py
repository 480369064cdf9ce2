"""Backfill: ``mparticle-klaviyo replay`` of an export into the emulator at Klaviyo's XL limits.

    .venv/bin/python bench/backfill.py [--mode both|server|client] [--server-events 200000]
        [--client-events 5000] [--runs 2] [--src TREE]

Each run writes ``bench/workload.py`` batches (10 mParticle events that become 12 Klaviyo events,
and a granted email consent, a distinct user each) to a JSON-lines file, starts the emulator
(``bench/servers.py emulator``, Klaviyo's XL limits, which are also the connection's defaults)
and times ``python -m mparticle_klaviyo replay FILE``, from start to exit, in one mode:

* server mode, ``--server-events`` Klaviyo events: bulk event jobs of up to 1000 events at
  ``POST /api/event-bulk-create-jobs`` (10/s, 150/min), consents packed into bulk subscription
  jobs at their own endpoint (75/s, 700/min) alongside;
* client mode, ``--client-events`` Klaviyo events: one request per event at
  ``POST /client/events`` (350/s, 3500/min), one ``/client/subscriptions`` request per batch.

Baseline, same run: the minimum the limit allows, events / events per request / the steady
budget per minute (``window_budgets``: 150 jobs or 3500 requests a minute), and the floor of our
own limiter for as many requests (the time of its last admission; its steady rate is 98% of
the limit, see ``derive_params``). Goal: wall time <= 110% of the minimum.

``--src TREE`` runs ``replay`` from another source tree (a ``git worktree`` of an older commit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from mparticle_klaviyo.delivery.clock import FakeClock
from mparticle_klaviyo.delivery.ratelimit import RateLimiter, window_budgets
from mparticle_klaviyo.klaviyo.limits import DEFAULT_RATE_LIMITS

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    BENCH,
    PYTHON,
    get_json,
    median,
    python_path,
    start_emulator,
    stop_on_sigterm,
    timed,
    tree_name,
    write_batches,
    write_config,
)

KLAVIYO_EVENTS_PER_BATCH = 12  # a purchase of 2 products is 3 Klaviyo events
GOAL_RATIO = 1.10


class Mode(msgspec.Struct, frozen=True):
    """Where one mode's events go and how many one request carries."""

    name: str
    endpoint: str
    subscriptions: str  # the consents' endpoint
    events_per_request: int

    @property
    def path(self) -> str:
        """The events endpoint's URL path."""
        return self.endpoint.split(" ", 1)[1]

    def minimum_s(self, events: int) -> float:
        """Seconds the steady limit needs to let ``events`` through."""
        _, per_minute = window_budgets(DEFAULT_RATE_LIMITS[self.endpoint])
        return events / self.events_per_request / per_minute * 60

    def limiter_floor_s(self, events: int) -> float:
        """When our limiter admits the last of the requests ``events`` need, the first at 0."""
        limiter = RateLimiter(DEFAULT_RATE_LIMITS[self.endpoint], FakeClock(0.0))
        now = 0.0
        for _ in range(math.ceil(events / self.events_per_request)):
            while (wait := limiter.try_acquire(now)) > 0.0:
                now += wait
        return now


MODES = {
    "server": Mode("server", "POST /api/event-bulk-create-jobs", "/api/profile-subscription-bulk-create-jobs", 1000),
    "client": Mode("client", "POST /client/events", "/client/subscriptions", 1),
}


class Result(msgspec.Struct, kw_only=True):
    """One replay's figures."""

    batches: int
    events: int  # Klaviyo events in the input
    seconds: float
    exit_code: int | None  # None: timed out
    recorded: int
    subscribed: int
    statuses: dict[str, dict[str, int]]

    def answers(self, path: str) -> dict[str, int]:
        """Answers of ``path`` by status."""
        return self.statuses.get(path, {})

    def ratio(self, mode: Mode) -> float:
        """Wall time over the minimum."""
        return self.seconds / mode.minimum_s(self.events)


def replay(config: Path, source: Path, src: Path, timeout_s: float) -> tuple[float, int | None, str]:
    """``python -m mparticle_klaviyo replay SOURCE`` from tree ``src``: (wall seconds, exit code, output tail)."""
    with python_path(src):
        start = time.monotonic()
        try:
            done = subprocess.run(
                [PYTHON, "-m", "mparticle_klaviyo", "replay", str(source), "--config", str(config)],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return time.monotonic() - start, None, f"timed out after {timeout_s:.0f} s"
    return time.monotonic() - start, done.returncode, (done.stdout + done.stderr)[-1500:]


async def run(mode: Mode, events: int, args: argparse.Namespace) -> Result:
    """One replay of ``events`` Klaviyo events into a fresh emulator."""
    batches = math.ceil(events / KLAVIYO_EVENTS_PER_BATCH)
    with tempfile.TemporaryDirectory(prefix="bench-backfill-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        emulator = await start_emulator(stack, workdir, {}, keep_events=False)
        config, _ = write_config(workdir, emulator.url, server_mode=mode.name == "server")
        with timed(f"writing {batches:,} batches"):
            write_batches(workdir / "export.jsonl", range(batches))
        timeout_s = 3 * mode.minimum_s(batches * KLAVIYO_EVENTS_PER_BATCH) + 120
        seconds, code, tail = await asyncio.to_thread(replay, config, workdir / "export.jsonl", args.src, timeout_s)
        if code != 0:
            print(f"  replay exit {code}: {tail}", file=sys.stderr)
        counters: dict[str, Any] = await get_json(emulator.url + "/_bench/counters")
        return Result(
            batches=batches,
            events=batches * KLAVIYO_EVENTS_PER_BATCH,
            seconds=seconds,
            exit_code=code,
            recorded=counters["events_recorded"],
            subscribed=counters["subscriptions"],
            statuses=counters["statuses"],
        )


def describe(mode: Mode, result: Result) -> str:
    """One run's figures beside the minimum."""
    events_ok = result.answers(mode.path).get("202", 0)
    return (
        f"{result.batches:,} batches -> {result.events:,} Klaviyo events; replay exit {result.exit_code},"
        f" {result.seconds:.1f} s = {result.ratio(mode):.3f} x the minimum {mode.minimum_s(result.events):.1f} s"
        f" (our limiter's floor {mode.limiter_floor_s(result.events):.1f} s); recorded {result.recorded:,};"
        f" {mode.path} {result.answers(mode.path)} ({result.recorded / max(1, events_ok):,.1f} events each);"
        f" {mode.subscriptions} {result.answers(mode.subscriptions)}, profiles subscribed {result.subscribed:,}"
    )


async def main_async(args: argparse.Namespace) -> None:
    """``--runs`` replays per mode; each run's figures and the medians."""
    print(f"replay from {args.src} ({tree_name(args.src)}), Klaviyo's XL limits", flush=True)
    names = ["server", "client"] if args.mode == "both" else [args.mode]
    summary: list[str] = []
    for name in names:
        mode, events = MODES[name], args.server_events if name == "server" else args.client_events
        results: list[Result] = []
        for number in range(1, args.runs + 1):
            results.append(await run(mode, events, args))
            print(f"{name} run {number}: {describe(mode, results[-1])}", flush=True)
        ratio = median([r.ratio(mode) for r in results])
        complete = all(r.exit_code == 0 and r.recorded == r.events for r in results)
        summary.append(
            f"  {name}: {median([r.seconds for r in results]):.1f} s for {results[0].events:,} events ="
            f" {ratio:.3f} x the minimum {mode.minimum_s(results[0].events):.1f} s; every event recorded: {complete}"
            f" -> goal (<= {GOAL_RATIO:.0%} of the minimum) {'met' if ratio <= GOAL_RATIO and complete else 'NOT MET'}"
        )
    print(f"\nmedian of {args.runs} runs:")
    print("\n".join(summary))


def main() -> None:
    """Parse flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["both", "server", "client"], default="both")
    parser.add_argument("--server-events", type=int, default=200_000, help="Klaviyo events replayed in server mode")
    parser.add_argument("--client-events", type=int, default=5_000, help="Klaviyo events replayed in client mode")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--src", type=Path, default=BENCH.parent, help="source tree of replay (default: this one)")
    args = parser.parse_args()
    args.src = args.src.resolve()
    stop_on_sigterm()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
