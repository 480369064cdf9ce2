"""The ``serve`` process's ``Service`` in this test's loop: ingest -> store -> dispatcher -> Klaviyo."""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import closing
from pathlib import Path

import aiohttp
import pytest

from mparticle_klaviyo.config import load_config
from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig
from mparticle_klaviyo.service.runner import Service
from mparticle_klaviyo.store.base import JobState, NewJob
from mparticle_klaviyo.store.owner import OwnerLock
from mparticle_klaviyo.store.postgres import PostgresJobStore
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from mparticle_klaviyo.store.watch import WRITE_ERROR_HOLD_S
from tests.service.e2e_helpers import (
    FAST_LIMITS,
    PUBLIC_KEY,
    RecordingEmulator,
    basic_auth,
    custom_event,
    free_port,
    run_async,
    start_recording_emulator,
    toml,
    user_batch,
    wait_until,
    write_service_config,
)
from tests.store.pg import admin, schema_of, terminate


async def _running(
    emulator: RecordingEmulator, tmp_path: Path, **service: object
) -> tuple[Service, asyncio.Task[None]]:
    port = free_port()
    config = load_config(write_service_config(tmp_path, emulator.url, port, service=dict(service)))
    running = Service(config)
    ready = asyncio.Event()
    task = asyncio.create_task(running.run(ready))
    await asyncio.wait_for(ready.wait(), 5)
    return running, task


async def _post_events(port: int, batch: dict[str, object]) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/v2/events", json=batch, headers={"Authorization": basic_auth()}
        ) as response,
    ):
        return response.status


def _store_counts(tmp_path: Path) -> dict[JobState, int]:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    try:
        return {count.state: count.count for count in store.counts()}
    finally:
        store.close()


def test_an_event_posted_to_the_service_reaches_klaviyo_and_leaves_the_store(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        service, task = await _running(emulator, tmp_path)
        status = await _post_events(service.config.service.port, user_batch("ada", [custom_event("m1")]))
        assert status == 202
        await wait_until(lambda: _true(emulator.unique_ids() == ["m1"]), 5.0, "delivery")
        service.stop.set()
        await asyncio.wait_for(task, 10)
        assert _store_counts(tmp_path) == {}
        await emulator.close()

    run_async(scenario())


def test_stopping_the_service_releases_the_leases_of_unfinished_sends(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        emulator.add_fault({"delay_ms": 1500})
        service, task = await _running(emulator, tmp_path, shutdown_timeout_s=0.2, lease_s=60.0)
        for n in range(3):
            assert await _post_events(service.config.service.port, user_batch(f"u{n}", [custom_event(f"m{n}")])) == 202
        await wait_until(lambda: _true(emulator.emulator.state.requests >= 3), 5.0, "sends in flight")
        started = time.monotonic()
        service.stop.set()
        await asyncio.wait_for(task, 10)
        assert time.monotonic() - started < 1.2
        assert _store_counts(tmp_path) == {JobState.READY: 3}, "released at once, not left to a 60 s lease"
        await emulator.close()

    run_async(scenario())


def test_the_service_delivers_as_the_sole_owner_of_its_store(tmp_path: Path) -> None:
    config = load_config(write_service_config(tmp_path, "http://127.0.0.1:9", free_port(), service={"lease_s": 2.0}))
    service = Service(config)
    try:
        assert service.owner is not None and service.owner.held
        assert service.dispatchers["acme"].options.sole_owner
        assert service.dispatchers["acme"].options.lease_s == 2.0
    finally:
        asyncio.run(service.store.close())
        service.release_owner()


def test_the_metrics_show_the_backlog_and_deliveries(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        service, task = await _running(emulator, tmp_path)
        port = service.config.service.port
        assert await _post_events(port, user_batch("ada", [custom_event("m1")])) == 202
        await wait_until(lambda: _true(len(emulator.unique_ids()) == 1), 5.0, "delivery")
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/metrics") as response:
            text = await response.text()
        assert 'mpk_jobs_delivered_total{connection="acme",kind="event"} 1.0' in text
        assert "mpk_backlog_jobs" in text
        service.stop.set()
        await asyncio.wait_for(task, 10)
        await emulator.close()

    run_async(scenario())


async def _true(value: bool) -> bool:
    return value


def test_pacing_waits_are_exported_as_counters_that_only_grow(tmp_path: Path) -> None:
    config = load_config(write_service_config(tmp_path, "http://127.0.0.1:9", free_port()))
    service = Service(config)

    async def scenario() -> str:
        dispatcher = service.dispatchers["acme"]
        dispatcher._tally.limiter_wait_s, dispatcher._tally.gate_wait_s = 1.5, 0.25
        await service._update_gauges()
        dispatcher._tally.limiter_wait_s = 2.0
        await service._update_gauges()
        await service.store.close()
        return service.metrics.exposition().decode()

    text = asyncio.run(scenario())
    assert 'mpk_limiter_wait_seconds_total{connection="acme"} 2.0' in text
    assert 'mpk_retry_after_wait_seconds_total{connection="acme"} 0.25' in text


def test_the_oldest_job_age_returns_to_zero_once_nothing_is_ready(tmp_path: Path) -> None:
    config = load_config(write_service_config(tmp_path, "http://127.0.0.1:9", free_port()))
    service = Service(config)
    job = NewJob(connection="acme", key="k1", profile_key="", kind="event", payload=b"")

    async def scenario() -> list[float | None]:
        ages = []
        try:
            await service._update_gauges()
            ages.append(service.metrics.registry.get_sample_value("mpk_oldest_job_age_seconds", {"connection": "acme"}))
            await service.store.enqueue([job], time.time() - 100)
            await service._update_gauges()
            ages.append(service.metrics.registry.get_sample_value("mpk_oldest_job_age_seconds", {"connection": "acme"}))
            [claimed] = await service.store.claim("acme", 1, 60.0, time.time())
            await service.store.ack([claimed.id])
            await service._update_gauges()
            ages.append(service.metrics.registry.get_sample_value("mpk_oldest_job_age_seconds", {"connection": "acme"}))
        finally:
            await service.store.close()
            service.release_owner()
        return ages

    before, waiting, delivered = asyncio.run(scenario())
    assert before == 0.0, "exported from the start: an alert rule can rely on the series"
    assert waiting is not None and waiting >= 100
    assert delivered == 0.0, "the last job's age must not stay (and keep an alert firing)"


def _second_connection(config: Path, public_key: str, key: str, secret: str, **settings: object) -> None:
    """Append a connection ``beta`` with its own Events API credentials to a service config."""
    table = {
        "public_api_key": public_key,
        "klaviyo_url": load_config(config).connections["acme"].klaviyo_url,
        "events_api_key": key,
        "events_api_secret": secret,
        **settings,
    }
    lines = ["", "[connections.beta]"] + [f"{k} = {toml(v)}" for k, v in table.items()]
    config.write_text(config.read_text() + "\n".join(lines) + "\n")


def test_connections_to_one_klaviyo_account_share_its_lanes_and_others_do_not(tmp_path: Path) -> None:
    config_path = write_service_config(tmp_path, "http://127.0.0.1:9", free_port())
    _second_connection(config_path, PUBLIC_KEY, "beta-key", "beta-secret", rate_limits=FAST_LIMITS_TOML)
    (tmp_path / "other").mkdir()
    other_path = write_service_config(tmp_path / "other", "http://127.0.0.1:9", free_port())
    _second_connection(other_path, "OTHER1", "beta-key", "beta-secret")
    for path, shared in ((config_path, True), (other_path, False)):
        service = Service(load_config(path))
        try:
            acme, beta = service.dispatchers["acme"].lanes(), service.dispatchers["beta"].lanes()
            assert (acme["POST /client/events"] is beta["POST /client/events"]) is shared
        finally:
            asyncio.run(service.store.close())
            service.release_owner()


def test_two_connections_to_one_account_together_stay_within_its_limit(tmp_path: Path) -> None:
    limits = {**FAST_LIMITS, "POST /client/events": (10, 600)}
    toml_limits = {endpoint: list(pair) for endpoint, pair in limits.items()}

    async def scenario() -> None:
        emulator = await start_recording_emulator(EmulatorConfig(rate_limits=limits))
        port = free_port()
        config_path = write_service_config(tmp_path, emulator.url, port, rate_limits=toml_limits)
        _second_connection(config_path, PUBLIC_KEY, "beta-key", "beta-secret", rate_limits=toml_limits)
        service = Service(load_config(config_path))
        ready = asyncio.Event()
        task = asyncio.create_task(service.run(ready))
        await asyncio.wait_for(ready.wait(), 5)
        for who, auth in (("acme", basic_auth()), ("beta", basic_auth("beta-key", "beta-secret"))):
            events = [custom_event(f"{who}-{n}") for n in range(20)]
            batches = [user_batch(f"{who}{n}", [event]) for n, event in enumerate(events)]
            assert await _post_bulk(port, batches, auth) == 202
        await wait_until(lambda: _true(len(emulator.unique_ids()) == 40), 20.0, "40 deliveries")
        service.stop.set()
        await asyncio.wait_for(task, 10)
        assert 429 not in emulator.statuses(), "together the two connections went over the account's limit"
        await emulator.close()

    run_async(scenario(), timeout_s=60)


async def _post_bulk(port: int, batches: list[dict[str, object]], auth: str) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/v2/bulkevents", json=batches, headers={"Authorization": auth}
        ) as response,
    ):
        return response.status


FAST_LIMITS_TOML = {endpoint: list(pair) for endpoint, pair in FAST_LIMITS.items()}


def test_a_service_that_cannot_listen_gives_back_its_store_and_lock(tmp_path: Path) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        taken = int(emulator.url.rsplit(":", 1)[1])
        service = Service(load_config(write_service_config(tmp_path, emulator.url, taken)))
        with pytest.raises(OSError):
            await service.run()
        assert service.owner is not None and not service.owner.held
        with OwnerLock(tmp_path / "jobs.sqlite3") as again:
            assert again.held
        await emulator.close()

    run_async(scenario())


def test_on_postgresql_the_service_delivers_without_an_owner_lock_releasing_only_expired_leases(
    tmp_path: Path, postgres_url: str
) -> None:
    async def scenario() -> None:
        emulator = await start_recording_emulator()
        service, task = await _running(emulator, tmp_path, store=postgres_url)
        assert service.owner is None
        assert not service.dispatchers["acme"].options.sole_owner
        assert not (tmp_path / "jobs.sqlite3").exists()
        status = await _post_events(service.config.service.port, user_batch("ada", [custom_event("m1")]))
        assert status == 202
        await wait_until(lambda: _true(emulator.unique_ids() == ["m1"]), 5.0, "delivery")
        service.stop.set()
        await asyncio.wait_for(task, 10)
        with closing(PostgresJobStore(postgres_url)) as store:
            assert store.counts() == []
        await emulator.close()

    run_async(scenario())


DB_PASSWORD = "db-pw-never_shown_0123"


def test_on_postgresql_a_lost_database_answers_503_then_recovers_and_no_log_shows_the_password(
    tmp_path: Path, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    user, rest = postgres_url.split("://", 1)[1].split("@", 1)
    with_password = f"postgresql://{user}:{DB_PASSWORD}@{rest}"  # trust authentication ignores it

    async def scenario() -> None:
        emulator = await start_recording_emulator()
        service, task = await _running(emulator, tmp_path, store=with_password)
        port = service.config.service.port
        assert await _post_events(port, user_batch("ada", [custom_event("m1")])) == 202
        with admin() as conn:
            terminate(conn, schema_of(postgres_url))
        assert await _post_events(port, user_batch("bob", [custom_event("m2")])) == 503
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/readyz") as response:
            assert response.status == 503
            assert "unreachable" in await response.text()
        await asyncio.sleep(WRITE_ERROR_HOLD_S)

        async def accepted() -> bool:
            # Other users of a dropped connection (delivery, gauges) may fail once more and hold
            # ingest for another period; what matters is that it recovers.
            return await _post_events(port, user_batch("bob", [custom_event("m2")])) == 202

        await wait_until(accepted, 4 * WRITE_ERROR_HOLD_S, "ingest to recover")
        await wait_until(lambda: _true(sorted(emulator.unique_ids()) == ["m1", "m2"]), 10.0, "delivery")
        service.stop.set()
        await asyncio.wait_for(task, 10)
        await emulator.close()

    run_async(scenario())
    assert "unreachable" in caplog.text
    assert DB_PASSWORD not in caplog.text
