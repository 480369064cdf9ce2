"""Memory of ``serve`` under a burst of large bulk posts, beside a null server; and the processing factor.

    .venv/bin/python bench/ingest_memory.py [--posts 128] [--runs 3] [--budget-mb 256] [--src DIR]
    .venv/bin/python bench/ingest_memory.py --runs 0 --posts 1 --shape user   # the factor of another shape

Each run starts a fresh ``serve`` (temp config, temp SQLite store, server mode, delivering to the
emulator at Klaviyo's default XL limits), warms it with one small post, then sends ``--posts``
concurrent ``/v2/bulkevents`` posts (HTTP Basic auth, one connection each) of 100 batches of
~120 KB: ``bench/workload.py`` batches (every user and event id distinct, so all are accepted)
whose ten events each carry three ~4 KB custom attributes. A thread samples the process's VmRSS
every 50 ms; VmHWM is reset (``/proc/PID/clear_refs``) just before the burst, so it is the exact
peak of the burst and the ``--settle`` seconds after it. Baseline, same run: the same burst
against ``bench/servers.py null`` (reads each body, answers 202): the HTTP layer alone.

Then the processing factor: ``--factor-runs`` times, one post to a fresh ``serve``; (VmHWM
after its answer - VmRSS before) / body size. ``PROCESSING_FACTOR`` in
``server/admission.py`` should approximate it. ``--shape user`` puts the padding in the user
attributes instead, ``--shape fanout`` also gives each batch 100 small events: every event job
stores the batch's user part again, so these cost far more per body byte (burst them with care:
a fanout post of 12 MB costs about 1 GB).

``--src DIR`` runs ``serve`` from another source tree (``PYTHONPATH=DIR/src`` for that child
only), e.g. a worktree of an older commit. A tree without ``admission.py`` (``server/``, earlier ``service/``) has no
``ingest_memory_budget_mb``: the key is not written and ``--budget-mb`` is refused.
Everything runs on 127.0.0.1; every phase has a hard timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (
    AUTH,
    BENCH,
    Child,
    free_port,
    median,
    memory_mb,
    metrics,
    python_path,
    start_child,
    start_emulator,
    start_serve,
    stop_on_sigterm,
    timed,
    tree_name,
    write_config,
)
from workload import batch

HEADERS = {"Authorization": AUTH, "Content-Type": "application/json"}
BATCHES_PER_POST = 100
BATCH_BYTES = 120 * 1024  # under the 128 KB batch limit
PADS_PER_EVENT = 3  # several attributes: a Klaviyo string is at most 100 KB
FANOUT_EVENTS = 100
WARM_UP_USER = 50_000_000  # far from the burst's users
_encoder = msgspec.json.Encoder()


# ----------------------------------------------------------------------------- workload


def shaped_batch(user: int, shape: str, pad: str) -> dict[str, Any]:
    """A workload batch carrying ``PADS_PER_EVENT`` copies of ``pad`` where ``shape`` puts them.

    ``events``: in each event's custom attributes; ``user``: in the user attributes;
    ``fanout``: in the user attributes, and 100 small events instead of the workload's ten.
    """
    document = batch(user)
    pads = {f"note_{n}": pad for n in range(PADS_PER_EVENT)}
    if shape == "events":
        for event in document["events"]:
            event["data"].setdefault("custom_attributes", {}).update(pads)
        return document
    document["user_attributes"].update(pads)
    if shape == "fanout":
        document["events"] = [small_event(user, n) for n in range(FANOUT_EVENTS)]
    return document


def small_event(user: int, n: int) -> dict[str, Any]:
    """A custom event of about 150 bytes, its id distinct per user and ``n``."""
    data = {"event_name": "Tapped", "custom_event_type": "other", "source_message_id": f"m-{user}-f{n}"}
    return {"event_type": "custom_event", "data": {**data, "timestamp_unixtime_ms": 1_760_000_000_000 + n}}


def pad_for(shape: str, target: int) -> str:
    """A padding string that brings a ``shape`` batch to about ``target`` encoded bytes."""
    empty = shaped_batch(0, shape, "")
    pads = PADS_PER_EVENT * (len(empty["events"]) if shape == "events" else 1)
    return "x" * ((target - len(_encoder.encode(empty))) // pads)


def bulk_bodies(posts: int, shape: str = "events") -> list[bytes]:
    """``posts`` bodies of ``BATCHES_PER_POST`` padded batches, users distinct across all of them."""
    pad = pad_for(shape, BATCH_BYTES)
    per_post = BATCHES_PER_POST
    return [
        _encoder.encode([shaped_batch(user, shape, pad) for user in range(p * per_post, (p + 1) * per_post)])
        for p in range(posts)
    ]


# ----------------------------------------------------------------------------- readings


class RssSampler(threading.Thread):
    """VmRSS of ``pid`` every ``every_s`` seconds, in a thread (the event loop is busy sending)."""

    def __init__(self, pid: int, every_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.every_s = every_s
        self.samples: list[float] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(self.every_s):
            with contextlib.suppress(OSError, KeyError):
                self.samples.append(memory_mb(self.pid)[0])

    def finish(self) -> float:
        """Stop sampling; the largest VmRSS seen (MiB)."""
        self._done.set()
        self.join(5)
        return max(self.samples, default=float("nan"))


def reset_peak(pid: int) -> None:
    """Reset ``pid``'s VmHWM to its current VmRSS (Linux: ``5`` into ``/proc/PID/clear_refs``)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclasses.dataclass(frozen=True)
class Burst:
    """One burst against one server: RSS in MiB, answers by status, seconds to the last answer."""

    before_mb: float
    peak_mb: float
    sampled_mb: float
    end_mb: float  # VmRSS at the last answer
    after_mb: float  # VmRSS ``--settle`` seconds later
    statuses: Counter[int]
    seconds: float
    stored: float | None = None  # jobs ``serve`` committed (its /metrics); None for the null server

    def describe(self) -> str:
        """One line of figures."""
        answers = ", ".join(f"{status or 'none'}: {n}" for status, n in sorted(self.statuses.items()))
        return (
            f"peak {self.peak_mb:7.1f} MiB (sampled max {self.sampled_mb:.1f}), before {self.before_mb:.1f},"
            f" {self.end_mb:.1f} at the last answer, {self.after_mb:.1f} after; answers {answers}; {self.seconds:.1f} s"
            + ("" if self.stored is None else f"; {self.stored:,.0f} jobs stored")
        )


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> int:
    """POST one bulk body; the status (0: no answer, or not in time)."""
    try:
        async with session.post(url + "/v2/bulkevents", data=body, headers=HEADERS) as response:
            await response.read()
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def send_all(url: str, bodies: list[bytes], timeout_s: float) -> tuple[Counter[int], float]:
    """All ``bodies`` at once, one connection each; (answers by status, seconds to the last)."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = time.monotonic()
        async with asyncio.timeout(timeout_s + 10):
            statuses = await asyncio.gather(*(post(session, url, body) for body in bodies))
        return Counter(statuses), time.monotonic() - start


async def warm_up(url: str) -> None:
    """One small post, so that lazy start-up costs are not counted as the burst's."""
    statuses, _ = await send_all(url, [_encoder.encode([batch(WARM_UP_USER)])], 30.0)
    if statuses[202] != 1:
        raise RuntimeError(f"warm-up post answered {dict(statuses)}")


async def measure(child: Child, bodies: list[bytes], args: argparse.Namespace) -> Burst:
    """Warm up, burst, settle: the readings of one server."""
    await warm_up(child.url)
    await asyncio.sleep(1.0)
    before = memory_mb(child.pid)[0]
    reset_peak(child.pid)
    sampler = RssSampler(child.pid)
    sampler.start()
    try:
        statuses, seconds = await send_all(child.url, bodies, args.burst_timeout)
        end = memory_mb(child.pid)[0]
        await asyncio.sleep(args.settle)
        after, peak = memory_mb(child.pid)
    finally:
        sampled = sampler.finish()
    return Burst(before, peak, sampled, end, after, statuses, seconds)


# ----------------------------------------------------------------------------- servers


def has_budget(src: Path) -> bool:
    """Whether the tree at ``src`` admits ingest by a memory budget (``ingest_memory_budget_mb``)."""
    package = src / "src" / "mparticle_klaviyo"
    return any((package / part / "admission.py").exists() for part in ("server", "service"))


async def fresh_serve(stack: contextlib.ExitStack, workdir: Path, emulator_url: str, args: argparse.Namespace) -> Child:
    """``serve`` of ``--src`` on a new store in ``workdir``, ready."""
    service = {"ingest_memory_budget_mb": args.budget_mb} if args.budget_mb is not None else {}
    config, port = write_config(workdir, emulator_url, server_mode=True, **service)
    with python_path(args.src):
        return await start_serve(stack, config, port)


async def serve_burst(emulator_url: str, bodies: list[bytes], args: argparse.Namespace) -> Burst:
    """The burst against a fresh ``serve``."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-memory-") as tmp, contextlib.ExitStack() as stack:
        serve = await fresh_serve(stack, Path(tmp), emulator_url, args)
        burst = await measure(serve, bodies, args)
        stored = (await metrics(serve.url)).get("mpk_jobs_queued_total", 0.0)
        return dataclasses.replace(burst, stored=stored)


async def null_burst(bodies: list[bytes], args: argparse.Namespace) -> Burst:
    """The burst against ``bench/servers.py null``."""
    with tempfile.TemporaryDirectory(prefix="bench-null-") as tmp, contextlib.ExitStack() as stack:
        port = free_port()
        server = start_child(stack, [str(BENCH / "servers.py"), "null", str(port)], Path(tmp) / "null.log", port)
        await server.wait_ready("/readyz")
        return await measure(server, bodies, args)


async def processing_factor(emulator_url: str, body: bytes, args: argparse.Namespace) -> float:
    """(VmHWM after one post - VmRSS before) / body size, on a fresh ``serve``."""
    with tempfile.TemporaryDirectory(prefix="bench-factor-") as tmp, contextlib.ExitStack() as stack:
        serve = await fresh_serve(stack, Path(tmp), emulator_url, args)
        await warm_up(serve.url)
        await asyncio.sleep(1.0)
        before = memory_mb(serve.pid)[0]
        reset_peak(serve.pid)
        statuses, _ = await send_all(serve.url, [body], args.burst_timeout)
        peak = memory_mb(serve.pid)[1]
        if statuses[202] != 1:
            raise RuntimeError(f"the post was answered {dict(statuses)}: {serve.tail()}")
        return (peak - before) * 2**20 / len(body)


# ----------------------------------------------------------------------------- main


async def main_async(args: argparse.Namespace) -> None:
    """Bodies once; ``--runs`` bursts against ``serve`` and the null server; the factor."""
    with timed(f"generating {args.posts} bodies"):
        bodies = bulk_bodies(max(args.posts, 1), args.shape)
    size_mb = median([len(b) for b in bodies]) / 1e6
    budget = f"ingest_memory_budget_mb {args.budget_mb}" if args.budget_mb is not None else "no memory budget"
    print(f"serve from {args.src} ({tree_name(args.src)}), {budget}; {args.shape!r} posts of {size_mb:.1f} MB")
    runs: list[tuple[Burst, Burst]] = []
    factors: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-emulator-") as tmp, contextlib.ExitStack() as stack:
        emulator = await start_emulator(stack, Path(tmp), {}, keep_events=False)
        for number in range(1, args.runs + 1):
            runs.append((await serve_burst(emulator.url, bodies, args), await null_burst(bodies, args)))
            print_run(number, *runs[-1])
        for _ in range(args.factor_runs):
            factors.append(await processing_factor(emulator.url, bodies[0], args))
            print(f"processing factor: {factors[-1]:.2f} (one {len(bodies[0]) / 1e6:.1f} MB post)", flush=True)
    print_medians(runs, factors)


def print_run(number: int, serve: Burst, null: Burst) -> None:
    """One run's figures."""
    print(f"run {number}:")
    print(f"  serve {serve.describe()}")
    print(f"  null  {null.describe()}")
    print(f"  serve/null peak {serve.peak_mb / null.peak_mb:.2f}", flush=True)


def summary(bursts: list[Burst]) -> str:
    """Medians of some bursts, one line."""

    def mid(value: Callable[[Burst], float]) -> float:
        return median([value(b) for b in bursts])

    return (
        f"median of {len(bursts)}: peak {mid(lambda b: b.peak_mb):.1f} MiB, before {mid(lambda b: b.before_mb):.1f},"
        f" {mid(lambda b: b.end_mb):.1f} at the last answer, {mid(lambda b: b.after_mb):.1f} after;"
        f" 202: {mid(lambda b: b.statuses[202]):.0f}, 503: {mid(lambda b: b.statuses[503]):.0f};"
        f" {mid(lambda b: b.seconds):.1f} s"
    )


def print_medians(runs: list[tuple[Burst, Burst]], factors: list[float]) -> None:
    """Medians over the runs."""
    if runs:
        print(f"serve {summary([s for s, _ in runs])}")
        print(f"null  {summary([n for _, n in runs])}")
        print(f"serve/null peak, median: {median([s.peak_mb / n.peak_mb for s, n in runs]):.2f}")
    if factors:
        print(f"processing factor, median of {len(factors)}: {median(factors):.2f}")


def parse_args() -> argparse.Namespace:
    """Flags; ``--budget-mb`` resolved against what the tree supports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=128)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--factor-runs", type=int, default=3, help="single posts measuring the processing factor")
    parser.add_argument("--budget-mb", type=int, help="ingest_memory_budget_mb (default 256; only trees with one)")
    parser.add_argument("--src", type=Path, default=BENCH.parent, help="source tree of serve (default: this one)")
    parser.add_argument("--shape", choices=["events", "user", "fanout"], default="events", help="where the bulk is")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds sampled after the last answer")
    parser.add_argument("--burst-timeout", type=float, default=240.0, help="hard limit of one burst, seconds")
    args = parser.parse_args()
    args.src = args.src.resolve()
    if not has_budget(args.src):
        if args.budget_mb is not None:
            parser.error(f"{args.src} has no ingest_memory_budget_mb")
    elif args.budget_mb is None:
        args.budget_mb = 256
    return args


def main() -> None:
    """Parse flags and run."""
    args = parse_args()
    stop_on_sigterm()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
