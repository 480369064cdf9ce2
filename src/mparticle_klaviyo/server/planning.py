"""An ingest body -> its jobs: decode, check, plan, as one pure function of the request.

``plan_body`` does for one request what ingest must do before it can answer: decode the body
for its route (400 naming the field), refuse what is too large (413), and plan the jobs with
what is dropped and why. It reads nothing but its arguments (no HTTP, no store), so every
route's rules are tested without a server.
"""

from __future__ import annotations

import enum

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.plan import plan_jobs, planned_size
from mparticle_klaviyo.mparticle.decode import decode_document, decode_firehose
from mparticle_klaviyo.mparticle.model import UserBatch
from mparticle_klaviyo.server.admission import JOB_MEMORY_FACTOR
from mparticle_klaviyo.server.bodies import split_bulk
from mparticle_klaviyo.server.errors import PayloadTooLargeError
from mparticle_klaviyo.store.base import NewJob


class Route(enum.Enum):
    """The ingest route a body came in on: it decides what the body may be."""

    EVENTS = "events"  # /v2/events: one batch object
    BULK = "bulk"  # /v2/bulkevents: an array of batch objects
    WEBHOOK = "webhook"  # /webhook/{connection}: a batch or an array
    FIREHOSE = "firehose"  # /firehose: an event_processing_request


class Limits(msgspec.Struct, frozen=True):
    """The request's limits: batches per bulk array, bytes per batch, bytes its jobs may hold."""

    max_batches: int
    max_batch_bytes: int
    max_job_bytes: int


class BodyPlan(msgspec.Struct):
    """A body's jobs, how many events it carried, what was dropped (by reason), its jobs' size."""

    jobs: list[NewJob]
    events: int
    dropped: dict[str, int]
    job_bytes: int
    batch_key: str | None = None


def plan_body(route: Route, raw: bytes, connection: Connection, limits: Limits, now_ms: float) -> BodyPlan:
    """Decode ``raw`` as ``route`` takes it and plan its jobs.

    Raises ``InputError`` (400, naming the field) or ``PayloadTooLargeError`` (413).
    """
    batches = decode_body(route, raw, limits)
    job_bytes = planned_size(batches) * JOB_MEMORY_FACTOR
    if job_bytes > limits.max_job_bytes:
        raise PayloadTooLargeError(
            f"these batches would hold about {job_bytes // (1024 * 1024)} MiB while queued (each event's job"
            " keeps the user's attributes), over the ingest memory budget (ingest_memory_budget_mb):"
            " send fewer events per batch"
        )
    planned = plan_jobs(batches, connection, now_ms)
    key = batches[0].batch_key if route is Route.FIREHOSE else None
    return BodyPlan(planned.jobs, planned.events, dict(planned.dropped), job_bytes, key)


def decode_body(route: Route, raw: bytes, limits: Limits) -> list[UserBatch]:
    """The batches of a body, as ``route`` takes them."""
    if route is Route.BULK:
        parts = split_bulk(raw, limits.max_batches, limits.max_batch_bytes)
        return [_bulk_batch(part, f"/{n}") for n, part in enumerate(parts)]
    if route is Route.FIREHOSE:
        return [decode_firehose(raw)]
    batches = decode_document(raw)
    if route is Route.EVENTS and (len(batches) != 1 or raw.lstrip()[:1] != b"{"):
        raise InputError("", "expected one batch object (send arrays to /v2/bulkevents)")
    _no_firehose(*batches)
    return batches


def _bulk_batch(part: bytes, pointer: str) -> UserBatch:
    """One element of a bulk array: a batch object, never an array or a Firehose message."""
    if part[:1] != b"{":
        raise InputError(pointer, "expected a batch object")
    try:
        batch = decode_document(part)[0]
    except InputError as error:
        raise InputError(pointer + error.pointer, error.message) from None
    _no_firehose(batch, pointer=pointer)
    return batch


def _no_firehose(*batches: UserBatch, pointer: str = "") -> None:
    """Batch inputs take batches: a Firehose message there was sent to the wrong endpoint."""
    if any(b.source == "firehose" for b in batches):
        raise InputError(pointer + "/type", "Firehose messages go to /firehose")
