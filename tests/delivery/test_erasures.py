"""Before an erasure goes out, its profile's older queued jobs are dropped (a real SQLite store)."""

from __future__ import annotations

import time
from pathlib import Path

from mparticle_klaviyo.delivery.barrier import Barrier
from mparticle_klaviyo.delivery.erasures import erase_behind
from mparticle_klaviyo.jobs.erasure import Erasure, plan_erasure
from mparticle_klaviyo.mparticle.dsr import ErasureRequest
from mparticle_klaviyo.store.base import Job, NewJob
from tests.service.e2e_helpers import connection, custom_event, enqueue, open_store, run_async, user_batch

URL = "http://127.0.0.1:1"
CONN = connection(URL, server=True, forward_erasure=True)


def erasure_job(email: str = "ada@example.com", request_id: str = "r1") -> NewJob:
    return plan_erasure(ErasureRequest(request_id=request_id, identities={"email": email}), CONN)


def test_the_profiles_older_jobs_go_and_its_later_ones_and_other_profiles_stay(tmp_path: Path) -> None:
    async def body() -> None:
        store = open_store(tmp_path / "jobs.sqlite3")
        try:
            await enqueue(store, CONN, [user_batch("ada", [custom_event("a1"), custom_event("a2")])])
            await enqueue(store, CONN, [user_batch("bob", [custom_event("b1")])])
            await store.enqueue([erasure_job()], time.time())
            await enqueue(store, CONN, [user_batch("ada", [custom_event("a3")])])
            claimed = await store.claim(CONN.name, 2, 60, time.time())  # a1 and a2: claimed with nothing else
            # a2 failed and waits for its retry: READY in the store, not in the claim; erased there.
            await store.retry([claimed[1].id], time.time() + 3600, "503", True)
            rest = await store.claim(CONN.name, 10, 60, time.time())
            barrier = Barrier()
            erased = erase_behind(store, barrier, CONN.name, [claimed[0], *rest])
            result = await erased
            assert [job.key.split("\x1f")[1] for job in result.dropped] == ["a1"]
            assert [job.key.split("\x1f")[1] for job in result.deleted] == ["a2"]
            kept = [(job.kind, job.profile_key) for job in result.keep]
            assert kept == [
                ("event", "email:bob@example.com"),
                ("erasure", "email:ada@example.com"),
                ("event", "email:ada@example.com"),
            ]
        finally:
            await store.close()

    run_async(body())


def test_a_deleted_failing_job_no_longer_blocks_its_profile(tmp_path: Path) -> None:
    async def body() -> None:
        store = open_store(tmp_path / "jobs.sqlite3")
        try:
            await enqueue(store, CONN, [user_batch("ada", [custom_event("a1")])])
            [failing] = await store.claim(CONN.name, 1, 60, time.time())
            await store.retry([failing.id], time.time() + 3600, "503", True)  # due in an hour
            barrier = Barrier()
            barrier.failed(failing.profile_key, failing.id)
            await store.enqueue([erasure_job()], time.time())
            claimed = await store.claim(CONN.name, 10, 60, time.time())
            assert [job.kind for job in claimed] == ["erasure"]
            result = await erase_behind(store, barrier, CONN.name, claimed)
            assert [job.id for job in result.deleted] == [failing.id]
            assert barrier.blocker(failing.profile_key) is None
            assert await store.backlog(CONN.name) == 1
        finally:
            await store.close()

    run_async(body())


def test_a_claim_without_erasures_is_left_as_it_is(tmp_path: Path) -> None:
    async def body() -> None:
        store = open_store(tmp_path / "jobs.sqlite3")
        try:
            await enqueue(store, CONN, [user_batch("ada", [custom_event("a1")])])
            claimed: list[Job] = await store.claim(CONN.name, 10, 60, time.time())
            result = await erase_behind(store, Barrier(), CONN.name, claimed)
            assert (result.keep, result.dropped, result.deleted) == (claimed, [], [])
        finally:
            await store.close()

    run_async(body())


def test_the_phone_of_an_erasure_erases_jobs_keyed_by_that_phone() -> None:
    erasure = Erasure(request_id="r", email="ada@example.com", phone_number="+15555550100")
    assert erasure.profile_keys() == ["email:ada@example.com", "phone:+15555550100"]
