"""``replay --enqueue``: plan files' batches into jobs as ingest does and queue them for ``serve``."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.inputs import read_inputs
from mparticle_klaviyo.jobs.plan import Planned, plan_jobs
from mparticle_klaviyo.store.base import JobStore


class EnqueueSummary(msgspec.Struct, kw_only=True):
    """What ``replay --enqueue`` queued."""

    batches: int = 0
    stored: int = 0
    duplicates: int = 0
    input_errors: int = 0
    dropped: dict[str, int] = msgspec.field(default_factory=dict)


def enqueue_files(paths: list[Path], connection: Connection, store: JobStore, chunk: int = 500) -> EnqueueSummary:
    """Queue every forwardable event of ``paths`` for the service, in transactions of ``chunk`` batches."""
    summary = EnqueueSummary()
    dropped: Counter[str] = Counter()
    planned = Planned()

    def commit() -> None:
        nonlocal planned
        result = store.enqueue(planned.jobs, time.time())
        summary.stored += result.stored
        summary.duplicates += result.duplicates
        dropped.update(planned.dropped)
        planned = Planned()

    for item in read_inputs(paths):
        if item.batch is None:
            summary.input_errors += 1
            continue
        summary.batches += 1
        try:
            plan_jobs([item.batch], connection, time.time() * 1000, planned)
        except InputError:
            summary.input_errors += 1
        if summary.batches % chunk == 0:
            commit()
    commit()
    summary.dropped = dict(dropped)
    return summary
