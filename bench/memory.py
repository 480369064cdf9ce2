"""Peak memory of ``serve`` running with 1,000,000 queued events, beside an idle ``serve`` on an empty store.

    .venv/bin/python bench/memory.py [--events 1000000] [--duration 60] [--runs 3]

Set-up (once): ``--events / 10`` batches of ``bench/workload.py`` (10 events each, 11 jobs: ten
events and a consent subscription) are written as JSON lines and queued with
``mparticle-klaviyo replay --enqueue``. Each run then starts ``serve`` on that store, delivering
slowly to the emulator (client mode, ``POST /client/events`` at 2/s and 60/min), and samples
``/proc/PID/status`` (VmRSS, VmHWM) every 0.25 s for ``--duration`` seconds. Baseline, same run:
``serve`` on an empty store, sampled the same way. Prints the peaks (VmHWM) and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    EVENTS_PER_BATCH,
    Limits,
    enqueue_file,
    get_json,
    median,
    memory_mb,
    metrics,
    start_emulator,
    start_serve,
    stop_on_sigterm,
    timed,
    write_batches,
    write_config,
)

LIMITS: Limits = {"POST /client/events": (2, 60)}
GOAL_MB = 300.0


async def sample(pid: int, duration_s: float, every_s: float = 0.25) -> tuple[float, float]:
    """(largest VmRSS seen, VmHWM at the end) in MiB over ``duration_s`` seconds."""
    deadline = time.monotonic() + duration_s
    largest = 0.0
    while time.monotonic() < deadline:
        largest = max(largest, memory_mb(pid)[0])
        await asyncio.sleep(every_s)
    rss, hwm = memory_mb(pid)
    return max(largest, rss), hwm


async def peak(store_dir: Path, emulator_url: str, duration_s: float) -> tuple[float, float, float]:
    """Start ``serve`` on the store in ``store_dir``; (VmRSS max, VmHWM, Klaviyo events delivered)."""
    with contextlib.ExitStack() as stack:
        config, port = write_config(store_dir, emulator_url, server_mode=False, rate_limits=LIMITS)
        serve = await start_serve(stack, config, port)
        rss, hwm = await sample(serve.pid, duration_s)
        delivered = (await metrics(serve.url)).get("mpk_jobs_delivered_total", 0.0)
        return rss, hwm, delivered


async def main_async(args: argparse.Namespace) -> None:
    """Queue the backlog once, then measure loaded and idle ``serve`` ``--runs`` times."""
    batches = args.events // EVENTS_PER_BATCH
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp, contextlib.ExitStack() as stack:
        loaded, idle = Path(tmp) / "loaded", Path(tmp) / "idle"
        loaded.mkdir()
        idle.mkdir()
        emulator = await start_emulator(stack, Path(tmp), LIMITS, keep_events=False)
        config, _ = write_config(loaded, emulator.url, server_mode=False, rate_limits=LIMITS)
        with timed(f"writing {batches:,} batches"):
            write_batches(Path(tmp) / "backlog.jsonl", range(batches))
        with timed("replay --enqueue"):
            print(f"  {enqueue_file(config, Path(tmp) / 'backlog.jsonl')}", file=sys.stderr)
        (Path(tmp) / "backlog.jsonl").unlink()
        store_mb = sum(f.stat().st_size for f in loaded.glob("jobs.sqlite3*")) / 2**20
        results: list[tuple[float, float]] = []
        for number in range(1, args.runs + 1):
            rss, hwm, delivered = await peak(loaded, emulator.url, args.duration)
            idle_rss, idle_hwm, _ = await peak(idle, emulator.url, args.duration)
            results.append((hwm, idle_hwm))
            print(
                f"run {number}: {args.events:,} events queued (store {store_mb:,.0f} MiB): VmHWM {hwm:.1f} MiB"
                f" (VmRSS max {rss:.1f}), {delivered:.0f} jobs delivered in {args.duration:g} s;"
                f" empty store: VmHWM {idle_hwm:.1f} MiB (VmRSS max {idle_rss:.1f}); ratio {hwm / idle_hwm:.2f}",
                flush=True,
            )
        counters = await get_json(emulator.url + "/_bench/counters")
        print(f"  emulator: {counters['events_recorded']} events recorded, {counters['throttled']} throttled")
    loaded_mb = median([hwm for hwm, _ in results])
    idle_mb = median([idle for _, idle in results])
    print(f"\nmedian of {args.runs} runs: peak RSS (VmHWM) {loaded_mb:.1f} MiB with {args.events:,} events queued,")
    print(f"  {idle_mb:.1f} MiB idle on an empty store (baseline), ratio {loaded_mb / idle_mb:.2f}")
    print(f"  goal < {GOAL_MB:g} MB: {'met' if loaded_mb * 1.048576 < GOAL_MB else 'NOT MET'}")


def main() -> None:
    """Parse flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds each serve is sampled")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    stop_on_sigterm()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
