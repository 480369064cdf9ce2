"""Through ``serve``: consent removal (unsubscribe after subscribe) and erasure requests, end to end."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.service.e2e_helpers import (
    PRIVATE_KEY,
    RecordingEmulator,
    custom_event,
    post_bulk,
    recording_emulator,
    run_async,
    serving,
    user_batch,
    wait_until,
)

SUBSCRIBE = "/api/profile-subscription-bulk-create-jobs"
UNSUBSCRIBE = "/api/profile-subscription-bulk-delete-jobs"
BULK_EVENTS = "/api/event-bulk-create-jobs"
DELETE = "/api/data-privacy-deletion-jobs"
FIREHOSE_TOKEN = "fh-token-privacy-0123456789"


def consent_batch(user: str, consented: bool, stamp: int) -> dict[str, Any]:
    batch = user_batch(user, [])
    batch["consent_state"] = {"gdpr": {"email_marketing": {"consented": consented, "timestamp_unixtime_ms": stamp}}}
    return batch


def check(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def wrapped() -> bool:
        return predicate()

    return wrapped


async def metric(session: aiohttp.ClientSession, url: str, name: str) -> float:
    async with session.get(f"{url}/metrics") as response:
        text = await response.text()
    found = re.search(rf'^{name}{{connection="acme"}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def profile_of(emulator: RecordingEmulator, email: str) -> dict[str, Any] | None:
    profiles = emulator.state()["profiles"]
    found = [p for p in (profiles.values() if isinstance(profiles, dict) else profiles) if p.get("email") == email]
    return found[0] if found else None


def test_a_grant_then_a_revocation_subscribe_then_unsubscribe_in_that_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            recording_emulator() as emulator,
            serving(tmp_path, emulator.url, private_api_key=PRIVATE_KEY, consent_removal=True) as service,
        ):
            probed = check(lambda: {a.path for a in emulator.arrivals if a.status == 400} >= {SUBSCRIBE, UNSUBSCRIBE})
            await wait_until(probed, 20, "the start-up credentials check")
            # A slow subscribe: were both sent at once, the unsubscription would be applied first.
            emulator.add_fault({"delay_ms": 700, "path": SUBSCRIBE, "count": 1})
            async with aiohttp.ClientSession() as session:
                # One request: both jobs are claimed together, and the lanes could send them at once.
                grant, revoke = consent_batch("ada", True, 1_000), consent_batch("ada", False, 2_000)
                assert await post_bulk(session, service.url, [grant, revoke]) == 202
                await wait_until(check(lambda: bool(emulator.state()["unsubscriptions"])), 20, "the unsubscription")
                assert await post_bulk(session, service.url, [revoke]) == 202  # the same state again
                duplicates = await metric(session, service.url, "mpk_jobs_duplicate_total")
            assert await service.terminate() == 0
        sent = [a for a in emulator.arrivals if a.status != 400 and a.path in (SUBSCRIBE, UNSUBSCRIBE)]
        assert [a.path for a in sent] == [SUBSCRIBE, UNSUBSCRIBE]
        assert sent[1].at - sent[0].at >= 0.7, "the unsubscription left before the subscription was answered"
        [unsubscription] = emulator.state()["unsubscriptions"]
        assert (unsubscription["email"], unsubscription["channels"]) == ("ada@example.com", ["email.marketing"])
        profile = profile_of(emulator, "ada@example.com")
        assert profile is not None and profile["consent"]["email.marketing"] == "UNSUBSCRIBED"
        assert duplicates == 1, "a repeated consent state is queued once"

    run_async(scenario(), timeout_s=90)


def test_an_erasure_drops_what_waited_deletes_the_person_and_what_follows_is_sent_after(tmp_path: Path) -> None:
    async def scenario() -> None:
        settings: dict[str, Any] = {
            "private_api_key": PRIVATE_KEY,
            "forward_erasure": True,
            "firehose_token": FIREHOSE_TOKEN,
        }
        events_wait = {"status": 503, "path": BULK_EVENTS}  # events wait, failing, in the queue
        async with (
            recording_emulator(faults=[events_wait]) as emulator,
            serving(tmp_path, emulator.url, **settings) as service,
        ):
            async with aiohttp.ClientSession() as session:
                before = [
                    user_batch("ada", [custom_event("ada-1"), custom_event("ada-2")]),
                    user_batch("bob", [custom_event("bob-1"), custom_event("bob-2")]),
                ]
                assert await post_bulk(session, service.url, before) == 202
                failed = check(lambda: any(a.path == BULK_EVENTS and a.status == 503 for a in emulator.arrivals))
                await wait_until(failed, 20, "the events to fail once")
                answer = await _erasure(session, service.url)
                assert (answer["type"], answer["id"]) == ("dsr_processing_response", "dsr-e2e")
                # On a slow machine the events' 503s can open the account's circuit before the
                # erasure is claimed; the deletion then goes out as a probe, whose wait doubles
                # (1, 2, 4 ... s) while the events' probes keep failing.
                await wait_until(check(lambda: bool(emulator.state()["deletions"])), 60, "the deletion job")
                emulator.emulator.faults.clear()
                assert await post_bulk(session, service.url, [user_batch("ada", [custom_event("ada-3")])]) == 202
                await wait_until(check(lambda: emulator.state()["events_recorded"] >= 3), 30, "the events after")
                await asyncio.sleep(0.5)  # anything wrongly left would be sent by now
                erased = await metric(session, service.url, "mpk_jobs_erased_total")
            assert await service.terminate() == 0
        state = emulator.state()
        assert sorted(str(e["unique_id"]) for e in state["events"]) == ["ada-3", "bob-1", "bob-2"]
        assert state["events_recorded"] == 3, "ada's events from before the erasure were sent"
        [deletion] = state["deletions"]
        assert deletion["identifier"] == {"email": "ada@example.com"}
        assert erased == 2
        log = (tmp_path / "serve.log").read_text()
        assert "ada@example.com" not in log

    run_async(scenario(), timeout_s=150)


async def _erasure(session: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    message = {
        "type": "dsr_processing_request",
        "id": "dsr-e2e",
        "timestamp_ms": 1_764_300_000_000,
        "firehose_version": "3.2.0",
        "subject_request_id": "subject-e2e",
        "subject_request_type": "erasure",
        "subject_identities": {"email": {"encoding": "raw", "value": "ada@example.com"}},
        "regulation": "gdpr",
    }
    headers = {"Authorization": f"Token {FIREHOSE_TOKEN}"}
    async with session.post(f"{url}/firehose", json=message, headers=headers) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body
