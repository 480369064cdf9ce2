"""``plan_body``: a body decoded as its route takes it, refused with the field named, planned."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from mparticle_klaviyo.config import Connection, load_config
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.plan import plan_jobs, planned_size
from mparticle_klaviyo.mparticle.decode import decode_document
from mparticle_klaviyo.server.errors import PayloadTooLargeError
from mparticle_klaviyo.server.planning import Limits, Route, plan_body
from tests.service.e2e_helpers import custom_event, user_batch, write_service_config
from tests.service.messages import firehose_events

LIMITS = Limits(max_batches=100, max_batch_bytes=128 * 1024, max_job_bytes=256 * 1024 * 1024)
NOW_MS = time.time() * 1000  # the events are stamped now: Klaviyo takes no future events


def acme(tmp_path: Path) -> Connection:
    """The test service's connection ``acme``."""
    return load_config(write_service_config(tmp_path, "http://127.0.0.1:1", 8080)).connections["acme"]


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_a_bulk_body_is_planned_as_its_batches_would_be_one_by_one(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    batches = [user_batch(f"u{n}", [custom_event(f"m{n}a"), custom_event(f"m{n}b")]) for n in range(3)]
    plan = plan_body(Route.BULK, body(batches), connection, LIMITS, NOW_MS)
    decoded = [decode_document(body(b))[0] for b in batches]
    expected = plan_jobs(decoded, connection, NOW_MS)
    assert plan.jobs == expected.jobs and len(plan.jobs) == 6
    assert plan.events == 6 and plan.dropped == {}
    assert plan.job_bytes == planned_size(decoded) and plan.batch_key is None


def test_the_events_route_takes_one_batch_object_only(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    batch = user_batch("u1", [custom_event("m1")])
    assert plan_body(Route.EVENTS, body(batch), connection, LIMITS, NOW_MS).events == 1
    with pytest.raises(InputError) as raised:
        plan_body(Route.EVENTS, body([batch]), connection, LIMITS, NOW_MS)
    assert raised.value.pointer == "" and "one batch object" in raised.value.message


def test_a_bad_element_of_a_bulk_array_is_named_by_its_index(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    good = user_batch("u1", [custom_event("m1")])
    with pytest.raises(InputError) as raised:
        plan_body(Route.BULK, body([good, {"events": "nope"}]), connection, LIMITS, NOW_MS)
    assert raised.value.pointer == "/1/events"
    with pytest.raises(InputError) as raised:
        plan_body(Route.BULK, body([good, [good]]), connection, LIMITS, NOW_MS)
    assert raised.value.pointer == "/1"


def test_a_firehose_message_on_a_batch_route_is_refused_at_its_type(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    message = firehose_events()
    with pytest.raises(InputError) as raised:
        plan_body(Route.WEBHOOK, body(message), connection, LIMITS, NOW_MS)
    assert raised.value.pointer == "/type"
    with pytest.raises(InputError) as raised:
        plan_body(Route.BULK, body([message]), connection, LIMITS, NOW_MS)
    assert raised.value.pointer == "/0/type"


def test_the_firehose_route_answers_with_the_request_id(tmp_path: Path) -> None:
    message = firehose_events(request_id="req-42")
    plan = plan_body(Route.FIREHOSE, body(message), acme(tmp_path), LIMITS, NOW_MS)
    assert plan.batch_key == "req-42" and plan.events == 1


def test_jobs_over_the_room_left_in_the_budget_are_refused_before_they_are_built(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    raw = body([user_batch("u1", [custom_event(f"m{n}") for n in range(50)])])
    size = plan_body(Route.BULK, raw, connection, LIMITS, NOW_MS).job_bytes
    tight = Limits(max_batches=100, max_batch_bytes=128 * 1024, max_job_bytes=size - 1)
    with pytest.raises(PayloadTooLargeError) as raised:
        plan_body(Route.BULK, raw, connection, tight, NOW_MS)
    assert "ingest_memory_budget_mb" in raised.value.message


def test_too_many_batches_or_too_large_a_batch_is_413_naming_it(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    small = Limits(max_batches=2, max_batch_bytes=300, max_job_bytes=LIMITS.max_job_bytes)
    batch = user_batch("u1", [custom_event("m1")])
    with pytest.raises(PayloadTooLargeError):
        plan_body(Route.BULK, body([batch] * 3), connection, small, NOW_MS)
    large = user_batch("u2", [custom_event(f"m{n}") for n in range(10)])
    with pytest.raises(PayloadTooLargeError) as raised:
        plan_body(Route.BULK, body([batch, large]), connection, small, NOW_MS)
    assert raised.value.pointer == "/1"
