"""A key Klaviyo refuses (401/403) pauses the connection's delivery; nothing is dead-lettered.

The finding: each 401/403 used to dead-letter its job, so a revoked or under-scoped key emptied
the queue into the dead letters, one job at a time. Here the strict emulator revokes the key
mid-run (or stops knowing the public key): the backlog stays queued with no attempt counted,
the metrics say paused, and delivery resumes by itself once Klaviyo accepts a probe again, or
at once on ``mparticle-klaviyo resume`` (through the real ``serve`` process).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from mparticle_klaviyo.delivery.credentials import CredentialOptions
from mparticle_klaviyo.delivery.key_pause import CredentialGuard, ResumeRequests, answer_resume_requests
from mparticle_klaviyo.klaviyo.classify import Outcome, Permanent
from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.store.base import JobState
from tests.service.e2e_helpers import (
    FAST_LIMITS,
    PRIVATE_KEY,
    PUBLIC_KEY,
    RecordingEmulator,
    custom_event,
    free_port,
    options,
    post_bulk,
    recording_emulator,
    run_async,
    run_cli,
    serving,
    user_batch,
    wait_until,
    write_service_config,
)
from tests.service.rig import DeliveryRig

QUICK_PROBES = options(credentials=CredentialOptions(probe_every_s=0.2, retry_probe_s=0.1))
BULK = "POST /api/event-bulk-create-jobs"
OK = "mpk_credentials_ok"
SINCE = "mpk_credentials_refused_since_seconds"
PROBES = "mpk_credential_probes_total"


def _batches(first: int, end: int) -> list[dict[str, object]]:
    return [user_batch(f"u{n}", [custom_event(f"m{n}")]) for n in range(first, end)]


def _stored(path: Path) -> dict[int, tuple[int, int]]:
    """(state, attempts) of every job by id, read as an operator would."""
    with sqlite3.connect(path) as db:
        return {int(i): (int(s), int(a)) for i, s, a in db.execute("SELECT id, state, attempts FROM jobs")}


def dead_letters(path: Path) -> int:
    """Dead jobs in the store, read as an operator would."""
    return sum(1 for state, _ in _stored(path).values() if state == JobState.DEAD)


def _sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"connection": "acme", **labels})


def _delivered_once(emulator: RecordingEmulator, count: int) -> bool:
    return Counter(emulator.unique_ids()) == Counter({f"m{n}": 1 for n in range(count)})


# ----------------------------------------------------------------------------- the finding


def test_a_key_revoked_mid_run_pauses_delivery_buries_nothing_and_a_restored_key_resumes_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        async with DeliveryRig(tmp_path, server=True, batches=_batches(0, 20), options=QUICK_PROBES) as rig:
            emulator, metrics = rig.emulator, rig.delivery.metrics
            await rig.until_empty()
            keys = emulator.emulator.config.private_keys
            scopes = keys.pop(PRIVATE_KEY)  # revoked at Klaviyo
            await rig.enqueue(_batches(20, 60))
            rig.wake()

            await wait_until(_async(lambda: 401 in emulator.statuses()), 10.0, "Klaviyo to refuse the key")
            await asyncio.sleep(1.0)  # five probe intervals
            stored = _stored(rig.store_path)
            assert await rig.dead() == [], "a refused key dead-lettered jobs"
            assert sorted(stored.values()) == [(JobState.READY, 0)] * 40, "queued, with no attempt counted"
            assert (_sample(metrics, PROBES, verdict="refused") or 0) >= 2, "probing all along"
            assert _sample(metrics, OK) == 0.0
            labels = {"endpoint": BULK, "status": "401", "code": "authentication_failed"}
            assert (_sample(metrics, SINCE, **labels) or 0) > 0
            assert _delivered_once(emulator, 20)

            keys[PRIVATE_KEY] = scopes  # restored: the next probe passes, delivery resumes by itself
            await rig.until_empty()
            await rig.shutdown()
            assert _delivered_once(emulator, 60), "each event delivered exactly once"
            assert await rig.dead() == []
            assert _sample(metrics, OK) == 1.0
            assert _sample(metrics, SINCE, **labels) is None, "the paused series is gone"

    with caplog.at_level(logging.INFO, logger="mparticle_klaviyo.delivery"):
        run_async(scenario())
    paused = [r for r in caplog.records if r.getMessage().startswith("delivery paused")]
    assert [(r.levelname, r.connection, r.endpoint, r.status, r.code) for r in paused] == [  # type: ignore[attr-defined]
        ("ERROR", "acme", BULK, 401, "authentication_failed")
    ]
    assert len([r for r in caplog.records if r.getMessage().startswith("delivery resumed")]) == 1
    assert PRIVATE_KEY not in caplog.text and PUBLIC_KEY not in caplog.text


def test_a_refused_public_key_sends_no_more_than_the_requests_already_out(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = EmulatorConfig(rate_limits=dict(FAST_LIMITS), unknown_company_status=403)
        # Client mode: one request per event.
        async with DeliveryRig(
            tmp_path, emulator=config, batches=_batches(0, 60), options=QUICK_PROBES, start=False
        ) as rig:
            emulator, metrics = rig.emulator, rig.delivery.metrics
            config.company_ids = frozenset({"OTHER1"})  # Klaviyo no longer knows our public key
            rig.start()

            await wait_until(_async(lambda: 403 in emulator.statuses()), 10.0, "Klaviyo to refuse the key")
            await asyncio.sleep(0.5)
            assert await rig.dead() == [], "a refused key dead-lettered jobs"
            assert sorted(_stored(rig.store_path).values()) == [(JobState.READY, 0)] * 60
            probes = _sample(metrics, PROBES, verdict="refused") or 0
            assert probes >= 1
            # The lane's first requests (its initial concurrency) were out; the other 56 never went.
            assert emulator.statuses().count(403) <= 4 + probes + 1
            code = {"endpoint": "POST /client/events", "status": "403", "code": "permission_denied"}
            assert (_sample(metrics, SINCE, **code) or 0) > 0
            config.company_ids = frozenset({PUBLIC_KEY})
            await rig.until_empty()
            await rig.shutdown()
            assert _delivered_once(emulator, 60)

    run_async(scenario())


# ----------------------------------------------------------------------------- resume requests


def test_resume_requests_are_taken_once_in_order_and_unreadable_ones_are_dropped(tmp_path: Path) -> None:
    requests = ResumeRequests(tmp_path / "jobs.sqlite3")
    assert requests.take() == [], "no directory yet"
    requests.ask("acme")
    requests.ask("beta")
    (requests.directory / "0-garbage.json").write_text("{not json")
    (requests.directory / ".half-written.tmp").write_text('{"connection": "acme"}')
    assert requests.take() == ["acme", "beta"]
    assert requests.take() == []
    assert [p.name for p in requests.directory.iterdir()] == [".half-written.tmp"], "only the unfinished one stays"


class _Refusing:
    """A Klaviyo that refuses every request's credentials."""

    async def send(self, request: KlaviyoRequest) -> Outcome:
        return Permanent(status=403, reason="permission_denied", detail="missing scopes")


def test_serve_applies_a_resume_request_to_its_connection_at_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        metrics, client = Metrics(), _Refusing()
        hourly = CredentialOptions(probe_every_s=3600)
        guard = CredentialGuard("acme", lambda: client, {}, metrics, hourly)
        assert guard.refused(BULK, Permanent(status=403, reason="permission_denied", detail=""))
        requests = ResumeRequests(tmp_path / "jobs.sqlite3")
        stop = asyncio.Event()
        task = asyncio.create_task(answer_resume_requests(requests, {"acme": guard}, stop, every_s=0.02))
        requests.ask("acme")
        requests.ask("unknown")

        async def probed() -> bool:
            return (_sample(metrics, PROBES, verdict="refused") or 0) == 1

        await wait_until(probed, 5.0, "the probe a resume request asked for")
        stop.set()
        await task
        await guard.close()
        assert guard.paused(), "Klaviyo still refuses: a resume request only makes the probe go early"
        assert requests.take() == []

    run_async(scenario())


# ----------------------------------------------------------------------------- serve, status and resume


def test_serve_pauses_on_a_revoked_key_status_says_so_and_resume_restarts_delivery_at_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with recording_emulator() as emulator:
            keys = emulator.emulator.config.private_keys
            scopes = keys.pop(PRIVATE_KEY)  # revoked before serve starts: its start-up check says so
            async with serving(tmp_path, emulator.url, private_api_key=PRIVATE_KEY) as service:
                cli = ("--config", str(service.config))
                async with aiohttp.ClientSession() as session:
                    assert await post_bulk(session, service.url, _batches(0, 10)) == 202
                    refused_job = _async(lambda: any(a.status == 401 and a.events for a in emulator.arrivals))
                    await wait_until(refused_job, 20.0, "Klaviyo to refuse a job")
                    await asyncio.sleep(0.5)
                    assert dead_letters(tmp_path / "jobs.sqlite3") == 0, "a refused key dead-lettered jobs"

                    async def paused() -> bool:
                        async with session.get(f"{service.url}/metrics") as response:
                            text = await response.text()
                        return f'{OK}{{connection="acme"}} 0.0' in text

                    await wait_until(paused, 20.0, "delivery to pause")
                status = await run_cli("status", *cli, "--sample", "0", cwd=tmp_path)
                still = await run_cli("resume", "acme", *cli, "--wait", "10", cwd=tmp_path)
                keys[PRIVATE_KEY] = frozenset({"profiles:write"})  # back, but without events:write
                narrow = await run_cli("resume", "acme", *cli, "--wait", "10", cwd=tmp_path)
                keys[PRIVATE_KEY] = scopes
                await asyncio.sleep(1.0)
                waited = len(emulator.unique_ids())  # the next periodic probe is a minute away
                resumed = await run_cli("resume", "acme", *cli, "--wait", "10", cwd=tmp_path)
                await wait_until(_async(lambda: _delivered_once(emulator, 10)), 20.0, "the backlog delivered")
                again = await run_cli("resume", "acme", *cli, cwd=tmp_path)
                assert await service.terminate() == 0
        assert status[0] == 0, status
        [line] = [line for line in status[1].splitlines() if "delivery paused" in line]
        assert re.search(
            rf"acme: delivery paused: Klaviyo answered 401 authentication_failed on {BULK} "
            r"since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ",
            line,
        ), line
        assert still[0] == 1 and "acme: delivery paused: Klaviyo answered 401" in still[2], still
        assert narrow[0] == 1 and "acme: delivery paused: Klaviyo answered 403 permission_denied" in narrow[2], narrow
        assert waited == 0, "resumed before anyone asked"
        assert resumed[0] == 0 and "acme: delivery resumed" in resumed[1], resumed
        assert again == (0, "acme: delivery is not paused\n", ""), again
        log = [json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines() if line.startswith("{")]
        checks = [(e["level"], e["message"]) for e in log if e["message"].startswith("credentials check")]
        refused = (
            f"credentials check: private key for events ({BULK}, needs events:write): refused: Klaviyo answered "
            "401 authentication_failed: Incorrect authentication credentials. (parameter Authorization); "
            "the key is revoked, mistyped or not a private key"
        )
        assert ("error", refused) in checks, checks
        assert [e["level"] for e in log if e["message"].startswith("delivery paused")] == ["error"]
        text = (tmp_path / "serve.log").read_text() + "".join(out + err for _, out, err in (status, still, resumed))
        assert PRIVATE_KEY not in text

    run_async(scenario(), timeout_s=120)


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def wrapped() -> bool:
        return check()

    return wrapped


def test_resume_without_a_running_serve_says_so_and_an_unknown_connection_is_a_config_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        config = write_service_config(tmp_path, "http://127.0.0.1:9", free_port())
        down = await run_cli("resume", "acme", "--config", str(config), cwd=tmp_path)
        unknown = await run_cli("resume", "nope", "--config", str(config), cwd=tmp_path)
        assert down[0] == 1 and "serve is not answering" in down[2], down
        assert unknown[0] == 2 and "no connection 'nope'" in unknown[2], unknown

    run_async(scenario())
