"""Dead letters one can work with: their reasons, their log lines, and what a redrive would send.

Reasons name what gave up and why, as ``:``-separated parts: ``retries_exhausted:http_503``
(``max_attempts`` failures, the last a 503), ``max_age:timeout``, ``max_age:throttled`` (a 429
past ``max_age_s``), ``max_age:klaviyo_unreachable``; Klaviyo's refusals stay ``http_400``, and
mapping's are ``unmappable`` or ``dropped:<why>``. ``dlq --reason`` matches whole parts, so
``--reason http_503`` finds every job that gave up on 503s.

Log lines name jobs by id (the first ``MAX_LOGGED_IDS`` of them, and how many there are), never
by anything from their payload: no keys, emails, phones or events.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.delivery.payloads import BulkEventBuilder
from mparticle_klaviyo.delivery.units import Unmappable, map_job
from mparticle_klaviyo.jobs.plan import decode_payload
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.mapping.result import MappedEvent
from mparticle_klaviyo.store.base import DeadFilter, Job, JobState, JobStore

RETRIES_EXHAUSTED = "retries_exhausted"
MAX_AGE = "max_age"
THROTTLED = "throttled"
# A 1000-job bulk request failing is one log line, not a 1000-id one.
MAX_LOGGED_IDS = 20

dlq_log = logging.getLogger("mparticle_klaviyo.dlq")
_FIRST_WORD = re.compile(r"[a-z0-9_]+")


def dead_reason(limit: str, cause: str) -> str:
    """The reason of a job that gave up: the limit it reached, then its last failure's cause."""
    return f"{limit}:{cause}"


def postpone_cause(error: str) -> str:
    """The cause code a postponement's error starts with: ``throttled (429)`` -> ``throttled``."""
    match = _FIRST_WORD.match(error)
    return match.group(0) if match else "postponed"


def job_fields(ids: Sequence[int]) -> dict[str, object]:
    """Log fields naming jobs: the first ``MAX_LOGGED_IDS`` ids, and how many jobs there are."""
    return {"job_ids": [int(i) for i in ids[:MAX_LOGGED_IDS]], "jobs": len(ids)}


def iso_time(seconds: float) -> str:
    """A unix time as ISO 8601 UTC with milliseconds, as in the log lines' own ``time``."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int(seconds % 1 * 1000):03d}Z"


def redrive_logged(store: JobStore, where: DeadFilter, now: float) -> int:
    """``store.redrive(where, now)``, logged as one line with the jobs' ids; how many."""
    # Listed first: the store answers a redrive with a count, and the log line names ids.
    sample = [job.id for job in store.dead(where, MAX_LOGGED_IDS)]
    count = store.redrive(where, now)
    if count:
        fields = {**job_fields(sample), "jobs": count, "connection": where.connection, "reason": where.reason}
        dlq_log.info("redriven", extra={**fields, "next_due": iso_time(now)})
    return count


def preview(job: Job, connection: Connection | None, now_ms: float) -> str:
    """What a redrive of ``job`` would do today: the requests it would make, or why it would die again."""
    sent = would_send(job, connection, now_ms)
    return sent if isinstance(sent, str) else ", ".join(f"{r.method} {r.path}" for r in sent)


def would_send(job: Job, connection: Connection | None, now_ms: float) -> list[KlaviyoRequest] | str:
    """The requests a redrive of ``job`` would make today, or why it would send nothing."""
    if connection is None:
        return "not sent: no such connection in the config (it would wait in the queue)"
    mapped = map_job(job, connection, now_ms)
    if isinstance(mapped, Unmappable):
        return f"not sent: {mapped.reason} ({mapped.detail}): dead-lettered again"
    return list(mapped.requests) or _bulk_requests(mapped.events)


def job_view(job: Job) -> dict[str, object]:
    """A dead job as ``dlq show`` and the console show it: the stored input without its settings.

    Firehose settings hold the sender's Klaviyo key: they are left out.
    """
    try:
        stored: object = msgspec.to_builtins(msgspec.structs.replace(decode_payload(job.payload), settings=None))
    except msgspec.DecodeError as error:
        # "unmappable" dead letters are exactly the ones whose input may not decode: say so.
        stored = {"undecodable": str(error), "bytes": len(job.payload)}
    return {
        "id": job.id,
        "connection": job.connection,
        "kind": job.kind,
        "key": job.key,
        "state": JobState(job.state).name.lower(),
        "reason": job.dead_reason,
        "detail": job.last_error,
        "attempts": job.attempts,
        "throttles": job.throttles,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.created_at)),
        "input": stored,
    }


def _bulk_requests(events: Sequence[MappedEvent]) -> list[KlaviyoRequest]:
    """Server mode: the bulk request(s) the job's events travel in (packed with others when sent)."""
    builder = BulkEventBuilder()
    requests = [request for event in events for request in builder.add(event)]
    return requests + list(builder.flush())
