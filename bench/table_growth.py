"""PostgreSQL table growth: the store's tables while 1,000,000 jobs pass through it at a sustained rate.

    .venv/bin/python bench/table_growth.py [--jobs 1000000] [--sample-every 100000] [--backlog 20000]

Drives ``PostgresJobStore`` directly on a fresh schema (dropped at the end), as ``serve`` does:
a producer thread plans ``bench/workload.py`` batches with the real planner (real keys and
payloads: 11 jobs per batch of 10 events, event jobs and a subscription job) and enqueues them in
groups (``enqueue_many``), holding the backlog near ``--backlog`` ready jobs; a consumer thread
claims up to ``--claim`` jobs at a time and acks them (acks DELETE rows), at most ``--rate``
jobs/s (as a rate limit paces delivery; 0: as fast as the store goes). Every
``--sample-every`` acked jobs it prints the size (``pg_total_relation_size``: heap, TOAST and
indexes) and rows of ``jobs``, ``seen`` (the dedup keys) and ``profile_turns``, and
``n_dead_tup`` and the (auto)vacuum count of ``jobs`` from ``pg_stat_user_tables``.

Autovacuum: when the server runs with ``autovacuum = off`` (a test server), a thread stands in
for it, as the migration's settings for ``jobs`` would make it act: every ``--naptime`` seconds
(autovacuum_naptime's default, 60) it runs ``VACUUM jobs`` if ``n_dead_tup`` > 50 + 1% of the
live rows (no cost delay). ``--vacuum off`` leaves the dead rows (a table without vacuum).

What to expect: ``jobs`` holds only the backlog, so it stays bounded however many jobs pass
(the migration's per-table autovacuum reclaims the deleted rows' space for reuse); ``seen``
keeps one row per job key for the dedup window (``dedup_window_s``, 7 days by default:
``serve`` deletes older keys hourly), so it grows with traffic until the window is full, then
stays at (keys per day x days of window x bytes per key). The output ends with those bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg

from mparticle_klaviyo.config import Connection, load_config
from mparticle_klaviyo.jobs.plan import plan_jobs
from mparticle_klaviyo.mparticle.decode import decode_bulk
from mparticle_klaviyo.store.base import NewJob
from mparticle_klaviyo.store.postgres import PostgresJobStore

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import bulk_bodies, stop_on_sigterm, write_config
from pg import postgres_schema, postgres_version

TABLES = ("jobs", "seen", "profile_turns")
MIB = 1024 * 1024
LEASE_S = 120.0


class Sample(msgspec.Struct, kw_only=True):
    """The tables at one moment."""

    acked: int
    seconds: float
    sizes: dict[str, int]  # pg_total_relation_size per table
    rows: dict[str, int]  # exact row counts
    jobs_dead: int
    jobs_vacuums: int


def connection() -> Connection:
    """The workload's connection, as ``serve`` would load it (server mode; the URL is never called)."""
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        path, _ = write_config(Path(tmp), "http://127.0.0.1:9", server_mode=True)
        return load_config(path).connections["bench"]


def planned(conn: Connection, first_user: int, batches: int) -> list[NewJob]:
    """The jobs ``serve`` would enqueue for ``batches`` workload batches from user ``first_user``."""
    body = bulk_bodies(1, batches, first_user)[0]
    return plan_jobs(decode_bulk(body), conn, time.time() * 1000).jobs


def report_vacuum(notice: psycopg.errors.Diagnostic) -> None:
    """Print the ``tuples:`` line of a VACUUM VERBOSE report: dead rows an open snapshot kept are named there."""
    lines = (notice.message_primary or "").splitlines()
    if lines and "pg_toast" not in lines[0]:  # the jobs table's own report, not its TOAST table's
        for line in lines:
            if line.startswith("tuples:"):
                print(f"  [VACUUM jobs: {line}]", flush=True)


class Flow:
    """The producer and the consumer, and what they share: counts, and a stop flag."""

    def __init__(self, store: PostgresJobStore, args: argparse.Namespace) -> None:
        self.store, self.args = store, args
        self.enqueued = self.acked = 0
        self.stop = threading.Event()
        self.produced = threading.Event()
        self.url = ""
        self.errors: list[BaseException] = []

    def produce(self) -> None:
        """Enqueue planned jobs in groups while the backlog is under the target."""
        conn, user = connection(), 0
        while not self.stop.is_set() and self.enqueued < self.args.jobs:
            if self.enqueued - self.acked >= self.args.backlog:
                time.sleep(0.005)
                continue
            # One group = what a few concurrent ingest requests commit together.
            calls = [planned(conn, user + 10 * n, 10) for n in range(self.args.group)]
            user += 10 * self.args.group
            results = self.store.enqueue_many(calls, time.time())
            self.enqueued += sum(result.stored for result in results)
        self.produced.set()

    def consume(self) -> None:
        """Claim and ack (at most ``--rate`` jobs/s) until the producer is done and every job is acked."""
        start = time.monotonic()
        while not self.stop.is_set():
            # Delivery is what Klaviyo's limit paces: ingest keeps the backlog full ahead of it.
            if self.args.rate and self.acked > self.args.rate * (time.monotonic() - start):
                time.sleep(0.005)
                continue
            done = self.produced.is_set()  # read before the claim: an empty claim after it is final
            jobs = self.store.claim("bench", self.args.claim, LEASE_S, time.time())
            if not jobs:
                if done:
                    return
                time.sleep(0.005)
                continue
            self.store.ack([job.id for job in jobs])
            self.acked += len(jobs)

    def vacuum(self) -> None:
        """Stand in for autovacuum: every naptime, ``VACUUM jobs`` when autovacuum would."""
        with psycopg.connect(self.url, autocommit=True) as db:
            db.add_notice_handler(report_vacuum)
            while not self.stop.wait(self.args.naptime):
                live, dead = db.execute(
                    "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables"
                    " WHERE schemaname = current_schema() AND relname = 'jobs'"
                ).fetchone() or (0, 0)
                # The migration's autovacuum_vacuum_scale_factor (0.01) and PostgreSQL's threshold (50).
                if dead > 50 + 0.01 * live:
                    db.execute("VACUUM (VERBOSE) jobs")

    def guarded(self, work: str) -> None:
        """Run ``produce`` or ``consume``; an error stops both and is kept for the main thread."""
        try:
            getattr(self, work)()
        except BaseException as error:
            self.errors.append(error)
            self.stop.set()


def scalar(db: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> int:
    """The one integer ``query`` returns."""
    row = db.execute(query, params).fetchone()
    return int(row[0]) if row else 0


def scalar_text(db: psycopg.Connection[Any], query: str) -> str:
    """The one value ``query`` returns, as text."""
    row = db.execute(query).fetchone()
    return str(row[0]) if row else ""


def sample(db: psycopg.Connection[Any], acked: int, seconds: float) -> Sample:
    """Sizes and row counts of the store's tables, from this schema's catalogue."""
    sizes = {t: scalar(db, "SELECT pg_total_relation_size(%s::regclass)", (t,)) for t in TABLES}
    rows = {t: scalar(db, f"SELECT count(*) FROM {t}") for t in TABLES}
    stats = db.execute(
        "SELECT n_dead_tup, autovacuum_count + vacuum_count FROM pg_stat_user_tables"
        " WHERE schemaname = current_schema() AND relname = 'jobs'"
    ).fetchone()
    dead, vacuums = stats if stats else (0, 0)
    return Sample(acked=acked, seconds=seconds, sizes=sizes, rows=rows, jobs_dead=dead, jobs_vacuums=vacuums)


def describe(s: Sample) -> str:
    """One row of the table."""
    rate = s.acked / s.seconds if s.seconds else 0.0
    return (
        f"{s.acked:>10,} {s.seconds:7.0f} {rate:8,.0f}"
        f" {s.sizes['jobs'] / MIB:9.1f} {s.rows['jobs']:>8,} {s.jobs_dead:>8,} {s.jobs_vacuums:>4}"
        f" {s.sizes['seen'] / MIB:9.1f} {s.rows['seen']:>10,}"
        f" {s.sizes['profile_turns'] / MIB:8.1f} {s.rows['profile_turns']:>8,}"
    )


HEADER = (
    f"{'acked':>10} {'s':>7} {'jobs/s':>8} {'jobs MiB':>9} {'jobs rows':>8} {'dead tup':>8} {'vac':>4}"
    f" {'seen MiB':>9} {'seen rows':>10} {'turns MiB':>8} {'turns rows':>8}"
)


@contextlib.contextmanager
def running(flow: Flow, vacuum: bool) -> Iterator[list[threading.Thread]]:
    """The producer and consumer threads (and the vacuum stand-in), started; stopped and joined on the way out."""
    threads = [threading.Thread(target=flow.guarded, args=(work,), daemon=True) for work in ("produce", "consume")]
    helpers = [threading.Thread(target=flow.guarded, args=("vacuum",), daemon=True)] if vacuum else []
    for thread in threads + helpers:
        thread.start()
    try:
        yield threads
    finally:
        flow.stop.set()
        for thread in threads + helpers:
            thread.join()


def watch(flow: Flow, db: psycopg.Connection[Any], threads: list[threading.Thread]) -> list[Sample]:
    """Sample the tables every ``--sample-every`` acked jobs until the threads are done."""
    start, samples, due = time.monotonic(), [sample(db, 0, 0.0)], flow.args.sample_every
    print(HEADER + "\n" + describe(samples[-1]), flush=True)
    while any(thread.is_alive() for thread in threads):
        time.sleep(0.05)
        if flow.acked >= due or not any(thread.is_alive() for thread in threads):
            samples.append(sample(db, flow.acked, time.monotonic() - start))
            print(describe(samples[-1]), flush=True)
            due += flow.args.sample_every
    if flow.errors:
        raise flow.errors[0]
    return samples


def explain(samples: list[Sample], args: argparse.Namespace) -> None:
    """The bounds: jobs by its backlog, seen by keys x bytes per key over the dedup window."""
    last = samples[-1]
    per_key = last.sizes["seen"] / max(1, last.rows["seen"])
    per_profile = last.sizes["profile_turns"] / max(1, last.rows["profile_turns"])
    largest = max(samples, key=lambda s: s.sizes["jobs"])
    vacuumed = next((s for s in samples if s.jobs_vacuums), None)
    print(
        f"\njobs: largest {largest.sizes['jobs'] / MIB:.1f} MiB (at {largest.acked:,} acked), at the end"
        f" {last.sizes['jobs'] / MIB:.1f} MiB, {last.jobs_vacuums} vacuums;"
        + (
            f" from the first sample after a vacuum ({vacuumed.acked:,} acked) to the end it changed by"
            f" {(last.sizes['jobs'] - vacuumed.sizes['jobs']) / MIB:+.1f} MiB."
            if vacuumed
            else " no vacuum ran: every deleted job's row is still in the file."
        )
        + " Acks delete rows; vacuum makes their space reusable (it does not shrink the file), so the"
        " table holds the backlog plus the rows deleted between two vacuums (autovacuum_naptime at"
        " this rate), not every job that passed."
    )
    print(
        f"seen: {last.rows['seen']:,} keys in {last.sizes['seen'] / MIB:.1f} MiB = {per_key:.0f} bytes per key"
        " (row and primary key and first_seen index). One key per job stays for the dedup window (7 days by"
        " default; serve deletes older keys every hour), so seen levels off at jobs per day x 7 x"
        f" {per_key:.0f} B: {per_key * 7 / 1024:.1f} KiB per job/day of traffic,"
        f" e.g. {per_key * 7 * 1_000_000 / 1024**3:.1f} GiB at 1,000,000 jobs a day."
    )
    print(
        f"profile_turns: {last.rows['profile_turns']:,} profiles in {last.sizes['profile_turns'] / MIB:.1f} MiB ="
        f" {per_profile:.0f} bytes per profile, forgotten with the dedup window too (a profile per batch here)."
    )


def main() -> None:
    """Parse flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000, help="jobs to pass through the store")
    parser.add_argument("--sample-every", type=int, default=100_000, help="acked jobs between samples")
    parser.add_argument("--backlog", type=int, default=20_000, help="ready jobs the producer keeps queued")
    parser.add_argument("--group", type=int, default=8, help="requests of 10 batches an enqueue_many commits")
    parser.add_argument("--claim", type=int, default=500, help="most jobs a claim takes")
    parser.add_argument("--vacuum", choices=["auto", "on", "off"], default="auto", help="the VACUUM stand-in")
    parser.add_argument("--naptime", type=float, default=60.0, help="seconds between the stand-in's looks")
    parser.add_argument("--rate", type=float, default=0.0, help="most jobs/s acked (0: as fast as the store goes)")
    args = parser.parse_args()
    stop_on_sigterm()
    rate = f"acked at {args.rate:,.0f} jobs/s at most" if args.rate else "as fast as the store goes"
    print(f"PostgreSQL {postgres_version()}; {args.jobs:,} jobs, backlog ~{args.backlog:,}, {rate}", flush=True)
    with contextlib.ExitStack() as stack:
        url = postgres_schema(stack)
        store = PostgresJobStore(url)
        stack.callback(store.close)
        db = stack.enter_context(psycopg.connect(url, autocommit=True))
        autovacuum = scalar_text(db, "SHOW autovacuum")
        stand_in = args.vacuum == "on" or (args.vacuum == "auto" and autovacuum == "off")
        print(f"server autovacuum = {autovacuum}; VACUUM stand-in (every {args.naptime:g} s): {stand_in}")
        flow = Flow(store, args)
        flow.url = url
        with running(flow, stand_in) as threads:
            samples = watch(flow, db, threads)
        explain(samples, args)


if __name__ == "__main__":
    main()
