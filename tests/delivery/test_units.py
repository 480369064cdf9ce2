"""Claimed jobs -> send units: mapping at dispatch, client units, server-mode jobs too big to share."""

from __future__ import annotations

import json
import time
from typing import Any

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.delivery.units import MappedJob, PreparedUsers, Unit, Unmappable, build_units, map_job
from mparticle_klaviyo.jobs.erasure import plan_erasure
from mparticle_klaviyo.jobs.plan import SUBSCRIPTION, decode_payload, plan_jobs
from mparticle_klaviyo.mparticle.decode import decode_document
from mparticle_klaviyo.mparticle.dsr import ErasureRequest
from mparticle_klaviyo.store.base import Job, JobState, NewJob
from tests.service.e2e_helpers import connection, custom_event, purchase_event, user_batch

URL = "http://127.0.0.1:9"
NOW_MS = time.time() * 1000


def leased(new: NewJob, job_id: int = 1) -> Job:
    """``new`` as the store hands it out when claimed."""
    now = time.time()
    fields = {f: getattr(new, f) for f in ("connection", "key", "profile_key", "kind", "payload")}
    return Job(id=job_id, state=JobState.LEASED, attempts=0, throttles=0, created_at=now, run_at=now, **fields)


def jobs_of(batches: list[dict[str, Any]], conn: Connection) -> list[Job]:
    """The jobs ingest would store for ``batches``, as claimed from the store."""
    planned = plan_jobs(decode_document(json.dumps(batches).encode()), conn, NOW_MS)
    return [leased(new, n) for n, new in enumerate(planned.jobs, start=1)]


def mapped(jobs: list[Job], conn: Connection) -> list[MappedJob]:
    results = [map_job(job, conn, NOW_MS) for job in jobs]
    assert all(isinstance(result, MappedJob) for result in results), results
    return [result for result in results if isinstance(result, MappedJob)]


def bulk_event_count(unit: Unit) -> int:
    entries = unit.requests[0].body["data"]["attributes"]["events-bulk-create"]["data"]
    return sum(len(entry["attributes"]["events"]["data"]) for entry in entries)


def test_client_mode_makes_one_unit_per_job_with_its_requests_in_order() -> None:
    conn = connection(URL)
    jobs = jobs_of([user_batch("ada", [custom_event("m1"), purchase_event("p1", products=2)])], conn)
    units = build_units(mapped(jobs, conn), server_mode=False)
    assert [unit.jobs for unit in units] == [(jobs[0],), (jobs[1],)]
    assert [len(unit.requests) for unit in units] == [1, 3], "a purchase is its order plus one event per product"
    assert {request.path for unit in units for request in unit.requests} == {"/client/events"}


def test_a_job_too_big_for_one_bulk_request_gets_a_unit_of_its_own() -> None:
    conn = connection(URL, server=True)
    jobs = jobs_of([user_batch("ada", [custom_event("m1"), purchase_event("big", products=1200)])], conn)
    units = build_units(mapped(jobs, conn), server_mode=True)
    big = next(unit for unit in units if unit.jobs == (jobs[1],))
    assert len(big.requests) == 2, "1201 events need two bulk requests, sent one after the other"
    assert any(unit.jobs == (jobs[0],) for unit in units)


def test_a_payload_that_no_longer_decodes_is_unmappable() -> None:
    conn = connection(URL)
    [job] = jobs_of([user_batch("ada", [custom_event("m1")])], conn)
    result = map_job(Job(**{**_fields(job), "payload": b"\xc1"}), conn, NOW_MS)
    assert isinstance(result, Unmappable)
    assert result.reason == "unmappable"


def test_a_job_that_todays_settings_drop_is_unmappable_with_the_drop_reason() -> None:
    [job] = jobs_of([user_batch("ada", [custom_event("m1")])], connection(URL))
    android_only = connection(URL, supported_platforms=["Android"])
    result = map_job(job, android_only, NOW_MS)
    assert isinstance(result, Unmappable)
    assert result.reason == "dropped:unsupported_platform"


def test_a_subscription_job_without_a_list_id_today_is_unmappable() -> None:
    jobs = jobs_of([user_batch("ada", [], consent=True)], connection(URL))
    [subscription] = [job for job in jobs if job.kind == SUBSCRIPTION]
    no_list = connection(URL, list_id=None)
    result = map_job(subscription, no_list, NOW_MS)
    assert isinstance(result, Unmappable)
    assert result.reason.startswith("dropped:")


def test_a_job_is_mapped_with_todays_settings() -> None:
    [job] = jobs_of([user_batch("ada", [custom_event("m1", name="Clicked")])], connection(URL))
    renamed = connection(URL, metric_names={"Clicked": "Tapped"})
    result = map_job(job, renamed, NOW_MS)
    assert isinstance(result, MappedJob)
    [request] = result.requests
    assert request.body["data"]["attributes"]["metric"]["data"]["attributes"]["name"] == "Tapped"


def _fields(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in job.__struct_fields__}


def test_a_job_over_klaviyos_limits_is_unmappable_as_dropped_limit_exceeded() -> None:
    conn = connection(URL)
    big = custom_event("m1")
    big["data"]["custom_attributes"] = {"text": "x" * 200_000}
    [job] = jobs_of([user_batch("ada", [big])], conn)
    result = map_job(job, conn, NOW_MS)
    assert isinstance(result, Unmappable)
    assert result.reason == "dropped:limit_exceeded"


def test_an_erasure_job_is_one_unit_deleting_by_email_then_by_phone() -> None:
    conn = connection(URL, server=True, forward_erasure=True)
    new = plan_erasure(
        ErasureRequest(request_id="r1", identities={"email": "ada@example.com", "mobile_number": "+15555550100"}), conn
    )
    job = leased(new)
    [unit] = build_units(mapped([job], conn), server_mode=True)
    assert unit.jobs == (job,)
    bodies = [r.body["data"]["attributes"]["profile"]["data"]["attributes"] for r in unit.requests]
    assert bodies == [{"email": "ada@example.com"}, {"phone_number": "+15555550100"}]
    assert {r.path for r in unit.requests} == {"/api/data-privacy-deletion-jobs"}


def test_an_unreadable_erasure_job_is_unmappable() -> None:
    conn = connection(URL, server=True, forward_erasure=True)
    bad = NewJob(connection=conn.name, key="erasure:x", profile_key="", kind="erasure", payload=b"not an erasure")
    job = leased(bad)
    result = map_job(job, conn, NOW_MS)
    assert isinstance(result, Unmappable) and result.reason == "unmappable"


def test_jobs_of_one_batch_share_one_prepared_user_and_map_as_the_batch_does() -> None:
    conn = connection(URL, server=True)
    jobs = jobs_of([user_batch("ada", [custom_event("m1"), custom_event("m2"), purchase_event("p1")])], conn)
    users = PreparedUsers(conn)
    cached = [map_job(job, conn, NOW_MS, users) for job in jobs]
    plain = [map_job(job, conn, NOW_MS) for job in jobs]
    assert all(isinstance(m, MappedJob) for m in cached)
    assert [m.events for m in cached if isinstance(m, MappedJob)] == [
        m.events for m in plain if isinstance(m, MappedJob)
    ]
    profiles = {id(e.profile) for m in cached if isinstance(m, MappedJob) for e in m.events}
    assert len(profiles) == 1, "the user's profile was built once for its three jobs"


def test_the_prepared_users_are_bounded_oldest_first() -> None:
    conn = connection(URL, server=True)
    users = PreparedUsers(conn, size=2)
    jobs = jobs_of([user_batch(f"u{n}", [custom_event(f"m{n}")]) for n in range(3)], conn)
    for job in jobs:
        map_job(job, conn, NOW_MS, users)
    assert len(users) == 2


def test_a_payload_stored_before_the_framing_still_maps() -> None:
    conn = connection(URL, server=True)
    [job] = jobs_of([user_batch("ada", [custom_event("m1")])], conn)
    legacy = msgspec.msgpack.encode(decode_payload(job.payload))  # how earlier releases stored a job
    result = map_job(msgspec.structs.replace(job, payload=legacy), conn, NOW_MS, PreparedUsers(conn))
    assert isinstance(result, MappedJob) and [e.unique_id for e in result.events] == ["m1"]


def test_a_frame_cut_short_is_unmappable_not_a_crash() -> None:
    conn = connection(URL, server=True)
    [job] = jobs_of([user_batch("ada", [custom_event("m1")])], conn)
    result = map_job(msgspec.structs.replace(job, payload=job.payload[:8]), conn, NOW_MS, PreparedUsers(conn))
    assert isinstance(result, Unmappable) and result.reason == "unmappable"
