"""The jobs table's columns as both SQL stores select them, and the conversion of a row to a ``Job``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mparticle_klaviyo.store.base import Job, JobState

JOB_COLUMNS = (
    "id, connection, key, profile_key, kind, payload, state, attempts, throttles,"
    " created_at, run_at, lease_until, last_error, dead_reason"
)
STATES = {int(state): state for state in JobState}


def to_job(row: Sequence[Any]) -> Job:
    """A ``Job`` from a row of JOB_COLUMNS."""
    return Job(
        id=row[0],
        connection=row[1],
        key=row[2],
        profile_key=row[3],
        kind=row[4],
        payload=row[5],
        state=STATES[row[6]],
        attempts=row[7],
        throttles=row[8],
        # SQLite's RETURNING hands back a whole REAL as the int it stored it as: make it a float again.
        created_at=float(row[9]),
        run_at=float(row[10]),
        lease_until=float_or_none(row[11]),
        last_error=row[12],
        dead_reason=row[13],
    )


def float_or_none(value: float | None) -> float | None:
    """A REAL column's value as a float (SQLite may hand back a whole REAL as an int)."""
    return None if value is None else float(value)
