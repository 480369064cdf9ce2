"""The Live stream through the real service (``Service`` with its console, the emulator, SQLite).

Every outcome an operator may see is produced by the real path: ingest's answers (accepted,
dropped, refused 400/401) and delivery's verdicts (delivered, retried, dead-lettered).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from mparticle_klaviyo.config import load_config
from mparticle_klaviyo.console.app import mount_console
from mparticle_klaviyo.observe.live import BatchIn, RequestOut
from mparticle_klaviyo.service.runner import Service
from tests.console.helpers import PASSWORD, client, logged_in
from tests.service.e2e_helpers import (
    RecordingEmulator,
    basic_auth,
    custom_event,
    free_port,
    run_async,
    start_recording_emulator,
    user_batch,
    wait_until,
    write_service_config,
)
from tests.service.messages import firehose_events

FIREHOSE_TOKEN = "fh-token-live-0123456789"
FIREHOSE_KEY_IN_SETTINGS = "DEMO01"  # the connection's public key: a Firehose request may carry it


class Running:
    """``serve`` in this loop: the service, its URL and the emulator it delivers to."""

    def __init__(self, service: Service, url: str, emulator: RecordingEmulator) -> None:
        self.service = service
        self.url = url
        self.emulator = emulator

    def entries(self, kind: str | None = None) -> list[BatchIn | RequestOut]:
        """What the Live stream kept so far."""
        assert self.service.live is not None
        return self.service.live.entries(kind)


@asynccontextmanager
async def running(
    tmp_path: Path, *, console: bool = True, faults: tuple[dict[str, Any], ...] = ()
) -> AsyncIterator[Running]:
    """The service as ``serve`` runs it (console mounted as the CLI mounts it), on a free port."""
    emulator = await start_recording_emulator()
    for rule in faults:
        emulator.add_fault(rule)
    port = free_port()
    extra = {"console_password": PASSWORD} if console else {}
    path = write_service_config(tmp_path, emulator.url, port, service=extra, firehose_token=FIREHOSE_TOKEN)
    service = Service(load_config(path))
    wake, node = service.ingest.wake, service.node
    mount_console(service.app, service.config, service.store, service.metrics, wake, "jobs.sqlite3", node=node)
    ready = asyncio.Event()
    task = asyncio.create_task(service.run(ready))
    try:
        await asyncio.wait_for(ready.wait(), 10)
        yield Running(service, f"http://127.0.0.1:{port}", emulator)
    finally:
        service.stop.set()
        await task
        await emulator.close()


async def post(url: str, path: str, body: Any, authorization: str | None = None) -> int:
    """POST a JSON document (or raw bytes); the status. ``authorization=""`` sends none."""
    auth = basic_auth() if authorization is None else authorization
    headers = {"Content-Type": "application/json", **({"Authorization": auth} if auth else {})}
    data = body if isinstance(body, bytes) else None
    async with aiohttp.ClientSession() as session:
        kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": body}
        async with session.post(f"{url}{path}", headers=headers, **kwargs) as response:
            await response.read()
            return response.status


async def get_page(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    """GET a console page without following redirects; status and text."""
    async with session.get(url, allow_redirects=False) as response:
        return response.status, await response.text()


def until(check: Callable[[], bool], what: str) -> Awaitable[None]:
    """Wait (up to 15 s) for ``check``."""

    async def checked() -> bool:
        return check()

    return wait_until(checked, 15, what)


def outcomes(served: Running, kind: str) -> list[str]:
    """Outcomes of the kept entries of ``kind``, newest first."""
    return [e.outcome if isinstance(e, BatchIn) else e.verdict.outcome for e in served.entries(kind)]


def test_an_accepted_batch_and_its_delivered_request_are_recorded(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as served:
            assert await post(served.url, "/v2/events", user_batch("ann", [custom_event("m-1")])) == 202
            await until(lambda: outcomes(served, "out") == ["delivered"], "the delivered request")
            batch, request = served.entries("in")[0], served.entries("out")[0]
            assert isinstance(batch, BatchIn) and isinstance(request, RequestOut)
            assert (batch.connection, batch.source, batch.events, batch.outcome) == ("acme", "events", 1, "accepted")
            assert batch.detail == "1 job(s) queued"
            assert (request.endpoint, request.jobs, request.events) == ("POST /client/events", 1, 1)
            assert request.inputs and request.requests[0][1].data is not None

    run_async(scenario())


def test_a_batch_whose_events_are_all_dropped_is_recorded_with_the_reason(tmp_path: Path) -> None:
    nameless = {"event_type": "custom_event", "data": {"custom_event_type": "other", "source_message_id": "x"}}

    async def scenario() -> None:
        async with running(tmp_path) as served:
            assert await post(served.url, "/v2/events", user_batch("ann", [nameless])) == 202
            [batch] = served.entries("in")
            assert isinstance(batch, BatchIn) and batch.outcome == "dropped"
            assert "0 job(s) queued; dropped 1: missing_event_name (1)" in batch.detail

    run_async(scenario())


def test_refused_requests_are_recorded_with_status_code_and_pointer(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as served:
            assert await post(served.url, "/v2/events", {"events": "not a list"}) == 400
            assert await post(served.url, "/v2/events", user_batch("ann", []), "") == 401
            assert await post(served.url, "/v2/events", user_batch("ann", []), basic_auth("wrong", "no")) == 403
            forbidden, unauthorised, bad = served.entries("in")
            assert isinstance(forbidden, BatchIn) and forbidden.detail.startswith("403 FORBIDDEN")
            assert isinstance(bad, BatchIn) and isinstance(unauthorised, BatchIn)
            assert (bad.outcome, bad.connection) == ("refused", "acme")
            assert bad.detail.startswith("400 BAD_REQUEST at /events")
            assert bad.body.data == b'{"events": "not a list"}'
            assert (unauthorised.outcome, unauthorised.connection) == ("refused", None)
            assert unauthorised.detail.startswith("401 UNAUTHORIZED")
            assert unauthorised.body.data is None  # refused before its body was read

    run_async(scenario())


def test_a_retried_request_is_recorded_with_its_status_and_next_due_then_the_delivery(tmp_path: Path) -> None:
    async def scenario() -> None:
        fault = {"path": "/client/events", "status": 503, "count": 1}
        async with running(tmp_path, faults=(fault,)) as served:
            assert await post(served.url, "/v2/events", user_batch("ann", [custom_event("m-1")])) == 202
            await until(lambda: outcomes(served, "out") == ["delivered", "retried"], "a retry, then the delivery")
            retried = served.entries("out")[1]
            assert isinstance(retried, RequestOut)
            assert retried.verdict.status == 503 and retried.verdict.due is not None

    run_async(scenario())


def test_a_request_klaviyo_refuses_is_recorded_as_dead_lettered_with_the_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        fault = {"path": "/client/events", "status": 400, "count": 1}
        async with running(tmp_path, faults=(fault,)) as served:
            assert await post(served.url, "/v2/events", user_batch("ann", [custom_event("m-1")])) == 202
            await until(lambda: outcomes(served, "out") == ["dead-lettered"], "the dead letter")
            entry = served.entries("out")[0]
            assert isinstance(entry, RequestOut)
            assert entry.verdict.reason.startswith("http_400") and entry.verdict.status == 400

    run_async(scenario())


def test_the_list_shows_entries_filtered_by_connection_and_kind(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as served, client() as session:
            await logged_in(session, served.url)
            assert await post(served.url, "/v2/events", user_batch("ann", [custom_event("m-1")])) == 202
            await until(lambda: outcomes(served, "out") == ["delivered"], "the delivered request")
            status, text = await get_page(session, f"{served.url}/console/live?connection=acme")
            assert status == 200 and "Live stream" in text
            assert "accepted" in text and "delivered" in text and "aria-current=page>Live stream" in text
            _, other = await get_page(session, f"{served.url}/console/live/rows?connection=beta")
            assert "nothing yet" in other and "accepted" not in other
            _, outs = await get_page(session, f"{served.url}/console/live/rows?connection=acme&kind=out")
            assert "delivered" in outs and "accepted" not in outs

    run_async(scenario())


def test_an_entry_shows_input_and_request_side_by_side_with_personal_data_masked(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as served, client() as session:
            await logged_in(session, served.url)
            assert await post(served.url, "/v2/events", user_batch("jane.doe", [custom_event("m-1")])) == 202
            await until(lambda: outcomes(served, "out") == ["delivered"], "the delivered request")
            for entry in served.entries():
                _, text = await get_page(session, f"{served.url}/console/live/{entry.id}")
                assert "jane.doe@example.com" not in text and "j***@e***.com" in text
                assert "mParticle input" in text and "class=sides" in text
            request = served.entries("out")[0]
            _, text = await get_page(session, f"{served.url}/console/live/{request.id}")
            assert "POST /client/events" in text and "Clicked" in text
            _, revealed = await get_page(session, f"{served.url}/console/live/{request.id}?reveal=1")
            assert "jane.doe@example.com" in revealed

    run_async(scenario())


def test_firehose_settings_and_the_key_they_carry_are_never_shown(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as served, client() as session:
            await logged_in(session, served.url)
            message = firehose_events(settings={"publicApiKey": FIREHOSE_KEY_IN_SETTINGS})
            assert await post(served.url, "/firehose", message, f"Token {FIREHOSE_TOKEN}") == 200
            [batch] = served.entries("in")
            assert batch.connection == "acme" and isinstance(batch, BatchIn) and batch.source == "firehose"
            _, text = await get_page(session, f"{served.url}/console/live/{batch.id}?reveal=1")
            assert "account_settings" in text and FIREHOSE_KEY_IN_SETTINGS not in text
            assert FIREHOSE_TOKEN not in text and "(not shown)" in text

    run_async(scenario())


def test_the_live_pages_need_a_session(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as served, client() as session:
            assert await post(served.url, "/v2/events", user_batch("ann", [custom_event("m-1")])) == 202
            for path in ("/console/live", "/console/live/rows", "/console/live/1"):
                status, _ = await get_page(session, f"{served.url}{path}")
                assert status == 303, path
                async with session.get(f"{served.url}{path}", allow_redirects=False) as response:
                    assert response.headers["Location"] == "/console/login"

    run_async(scenario())


def test_with_the_console_off_nothing_is_recorded(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path, console=False) as served:
            assert served.service.live is None and served.service.ingest.live is None
            assert await post(served.url, "/v2/events", user_batch("ann", [custom_event("m-1")])) == 202
            await until(lambda: "m-1" in served.emulator.unique_ids(), "the delivery")
            assert all(d._live is None for d in served.service.dispatchers.values())
            async with aiohttp.ClientSession() as session:
                status, _ = await get_page(session, f"{served.url}/console/live")
            assert status == 404

    run_async(scenario())


def test_an_unknown_entry_says_it_is_no_longer_kept(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with running(tmp_path) as served, client() as session:
            await logged_in(session, served.url)
            status, text = await get_page(session, f"{served.url}/console/live/999")
            assert status == 200 and re.search(r"Entry 999 is no longer kept", text)

    run_async(scenario())


def test_a_bulk_request_over_the_body_cap_keeps_its_first_batch_only(tmp_path: Path) -> None:
    def big(user: str) -> dict[str, Any]:
        batch = user_batch(user, [custom_event(f"m-{user}")])
        batch["user_attributes"] = {"notes": "n" * 20_000}
        return batch

    async def scenario() -> None:
        async with running(tmp_path) as served:
            assert await post(served.url, "/v2/bulkevents", [big("ann"), big("bob")]) == 202
            [batch] = served.entries("in")
            assert isinstance(batch, BatchIn) and batch.first_only and batch.events == 2
            assert batch.body.data is not None and len(batch.body.data) < 32 * 1024
            assert b"ann@example.com" in batch.body.data and b"bob@example.com" not in batch.body.data

    run_async(scenario())
