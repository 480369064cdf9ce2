"""Klaviyo unreachable for a while: delivery pauses behind the account's circuit, nothing is buried.

The dispatcher runs in this test's loop on a real SQLite store and the real client. An outage is
a loopback port that is bound but not listening (connection refused), on which the strict
emulator starts listening when Klaviyo "comes back"; or a scripted server answering 503s.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
import socket
import sqlite3
import time
from collections import Counter
from pathlib import Path

import aiohttp
import msgspec
import pytest
from aiohttp import web

from mparticle_klaviyo.config import load_config
from mparticle_klaviyo.delivery.circuit import Circuit, CircuitOptions, State
from mparticle_klaviyo.delivery.lane import Transport
from mparticle_klaviyo.delivery.outages import OutageReport
from mparticle_klaviyo.klaviyo.classify import Delivered, Outcome, Retryable
from mparticle_klaviyo.klaviyo.emulator import Emulator, EmulatorConfig
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.service.runner import Service
from mparticle_klaviyo.store.base import JobState
from tests.delivery.scripted_server import ScriptedServer, Step
from tests.service.e2e_helpers import (
    FAST_LIMITS,
    PUBLIC_KEY,
    ServeProcess,
    custom_event,
    free_port,
    options,
    post_bulk,
    run_async,
    run_cli,
    toml,
    user_batch,
    wait_until,
    write_service_config,
)
from tests.service.rig import DeliveryRig

# Opens fast (the FAST options retry every few tens of ms) and probes every 0.1-0.5 s.
QUICK_CIRCUIT = options(circuit=CircuitOptions(min_span_s=0.05, base_s=0.2, cap_s=0.5))
UNREACHABLE = "mpk_klaviyo_unreachable_since_seconds"
OPENINGS = "mpk_klaviyo_circuit_openings_total"


def _batches(count: int) -> list[dict[str, object]]:
    return [user_batch(f"u{n}", [custom_event(f"m{n}")]) for n in range(count)]


def _refusing_socket() -> socket.socket:
    """A loopback port that is bound but not listening: every connect is refused."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


async def _emulator_on(sock: socket.socket) -> tuple[Emulator, web.AppRunner]:
    """Klaviyo comes back: the emulator starts listening on the refusing socket's port."""
    emulator = Emulator(EmulatorConfig(rate_limits=dict(FAST_LIMITS)))
    runner = web.AppRunner(emulator.app(), access_log=None, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return emulator, runner


def _stored(path: Path) -> dict[int, tuple[int, int]]:
    """(state, attempts) of every job in the store by id, read as an operator would."""
    with sqlite3.connect(path) as db:
        return {int(i): (int(s), int(a)) for i, s, a in db.execute("SELECT id, state, attempts FROM jobs")}


def _sample(metrics: Metrics, name: str, connection: str = "acme") -> float | None:
    return metrics.registry.get_sample_value(name, {"connection": connection})


class Outage(msgspec.Struct):
    """What a 60-event run through an outage of ``outage_s`` looked like."""

    early: dict[int, tuple[int, int]]  # the store a third into the outage
    late: dict[int, tuple[int, int]]  # ... and at its end
    unreachable_since: float | None  # the gauge at the end of the outage
    recorded: Counter[str]  # unique_id -> times Klaviyo recorded it
    dead: int
    after: Metrics


async def _through_an_outage(tmp_path: Path, outage_s: float) -> Outage:
    sock = _refusing_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    # Klaviyo is not the rig's emulator here: it comes up later, on the refusing socket.
    async with DeliveryRig(tmp_path, klaviyo_url=url, batches=_batches(60), options=QUICK_CIRCUIT) as rig:
        metrics = rig.delivery.metrics
        await asyncio.sleep(outage_s / 3)
        early = _stored(rig.store_path)
        await asyncio.sleep(outage_s * 2 / 3)
        late = _stored(rig.store_path)
        since = _sample(metrics, UNREACHABLE)
        emulator, runner = await _emulator_on(sock)
        try:
            await rig.until_empty(timeout_s=30)
            await rig.shutdown()
            recorded = Counter(str(event["unique_id"]) for event in emulator.state.events)
            dead = len(await rig.dead())
        finally:
            await runner.cleanup()
    return Outage(early, late, since, recorded, dead, metrics)


# ----------------------------------------------------------------------------- the finding


def test_a_klaviyo_outage_longer_than_the_retry_window_buries_nothing_and_burns_no_attempts(
    tmp_path: Path,
) -> None:
    # 3 s: the FAST options' 8 attempts take well under a second, so today's retries are long spent.
    outage = _outage(tmp_path, outage_s=3.0)
    assert len(outage.late) == 60
    assert [job for job, (state, _) in outage.late.items() if state == JobState.DEAD] == []
    # Attempts were charged only for the failures before the circuit opened, and not after.
    attempts = {job: charged for job, (_, charged) in outage.late.items()}
    assert attempts == {job: charged for job, (_, charged) in outage.early.items()}, "charged while unreachable"
    assert max(attempts.values()) <= 3, attempts
    assert outage.recorded == Counter({f"m{n}": 1 for n in range(60)}), "each event delivered exactly once"
    assert outage.dead == 0


def test_an_outage_shows_in_the_metrics_and_in_one_log_line_when_it_starts_and_one_when_it_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.time()
    with caplog.at_level(logging.INFO, logger="mparticle_klaviyo.delivery"):
        outage = _outage(tmp_path, outage_s=1.0)
    assert outage.unreachable_since is not None and started <= outage.unreachable_since <= started + 1.0
    assert _sample(outage.after, UNREACHABLE) == 0.0, "back to 0 once Klaviyo answers"
    assert _sample(outage.after, OPENINGS) == 1.0
    down = [r for r in caplog.records if r.getMessage().startswith("Klaviyo unreachable since")]
    back = [r for r in caplog.records if r.getMessage().startswith("Klaviyo reachable again")]
    assert [(r.levelname, r.connections) for r in down] == [("WARNING", ["acme"])]  # type: ignore[attr-defined]
    assert [(r.levelname, r.connections) for r in back] == [("INFO", ["acme"])]  # type: ignore[attr-defined]
    assert re.fullmatch(
        r"Klaviyo unreachable since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ: connection_error \(.*\)", down[0].getMessage()
    )
    assert re.fullmatch(r"Klaviyo reachable again after \d+\.\d s", back[0].getMessage())
    assert PUBLIC_KEY not in caplog.text


def _outage(tmp_path: Path, outage_s: float) -> Outage:
    result: list[Outage] = []

    async def go() -> None:
        result.append(await _through_an_outage(tmp_path, outage_s))

    run_async(go())
    return result[0]


# ----------------------------------------------------------------------------- isolated failures


def test_an_isolated_failure_among_successes_does_not_open_the_circuit_and_counts_as_an_attempt(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with DeliveryRig(tmp_path, faults=[{"status": 503, "count": 1}], batches=_batches(20)) as rig:
            emulator, delivery = rig.emulator, rig.delivery
            await rig.until_empty()
            await rig.shutdown()
            assert emulator.statuses().count(503) == 1
            assert delivery.dispatcher.circuit.openings == 0
            assert _sample(delivery.metrics, OPENINGS) == 0.0
            assert (
                delivery.metrics.registry.get_sample_value(
                    "mpk_jobs_retried_total", {"connection": "acme", "reason": "http_503"}
                )
                == 1.0
            ), "an isolated failure is an attempt"
            assert sorted(emulator.unique_ids()) == sorted(f"m{n}" for n in range(20))

    run_async(scenario())


def test_a_job_failing_on_its_own_is_still_dead_lettered_after_max_attempts(tmp_path: Path) -> None:
    async def scenario() -> None:
        # More failures than the circuit's threshold, and no minimum span: only the rule that
        # one request alone is not an outage keeps the circuit closed.
        knobs = options(max_attempts=8, circuit=CircuitOptions(threshold=5, min_span_s=0.0))
        async with DeliveryRig(tmp_path, faults=[{"status": 503}], batches=_batches(1), options=knobs) as rig:
            await rig.until_empty()
            await rig.shutdown()
            [dead] = await rig.dead()
            assert (dead.dead_reason, dead.attempts) == ("retries_exhausted:http_503", 8)
            assert (dead.last_error or "").startswith("http_503")
            assert rig.emulator.statuses() == [503] * 8
            assert rig.delivery.dispatcher.circuit.openings == 0

    run_async(scenario())


# ----------------------------------------------------------------------------- probing


def test_while_the_circuit_is_open_requests_reach_klaviyo_one_at_a_time(tmp_path: Path) -> None:
    async def scenario() -> None:
        # A 5xx outage of 20 answers, each taking 50 ms (so overlaps would show), then Klaviyo is back.
        script = [Step(status=503, delay_s=0.05)] * 20
        knobs = options(circuit=CircuitOptions(min_span_s=0.05, base_s=0.1, cap_s=0.2))
        async with (
            ScriptedServer(script) as server,
            DeliveryRig(tmp_path, klaviyo_url=server.url, batches=_batches(30), options=knobs, start=False) as rig,
        ):
            delivery = rig.delivery
            watching = _Watching(delivery.client, delivery.dispatcher.circuit)
            delivery.dispatcher.client = watching
            rig.start()
            await rig.until_empty(timeout_s=20)
            await rig.shutdown()
            assert await rig.dead() == []
        assert len(server.received) == len(watching.sends), "every request that reached Klaviyo went out here"
        assert State.OPEN not in {send.state for send in watching.sends}, "a request went out while open"
        probes = sorted((send for send in watching.sends if send.state is State.PROBING), key=lambda s: s.start)
        assert len(probes) >= 3, "some probes failed before one succeeded"
        assert all(later.start >= earlier.end for earlier, later in itertools.pairwise(probes)), "two probes out"
        assert [probe.status for probe in probes] == [503] * (len(probes) - 1) + [202]
        # At Klaviyo: once the requests sent before it opened were answered, and until it closed,
        # no two requests were ever there at the same time.
        before = max(send.end for send in watching.sends if send.state is State.CLOSED and send.start < probes[0].start)
        during = [r for r in server.received if before < r.at < probes[-1].end]
        assert all(later.at >= earlier.answered_at for earlier, later in itertools.pairwise(during))
        delivered = Counter(_unique_id(r.body) for r in server.received if r.status == 202)
        assert delivered == Counter({f"m{n}": 1 for n in range(30)}), "each event delivered exactly once"

    run_async(scenario())


class _Send(msgspec.Struct, frozen=True):
    state: State  # the circuit's, as the request went out
    start: float
    end: float
    status: int | None


class _Watching:
    """The real client, noting for each request the circuit's state as it went out, and its answer."""

    def __init__(self, client: Transport, circuit: Circuit) -> None:
        self.client = client
        self.circuit = circuit
        self.sends: list[_Send] = []

    async def send(self, request: KlaviyoRequest) -> Outcome:
        state, start = self.circuit.state, time.monotonic()
        outcome = await self.client.send(request)
        status = outcome.status if isinstance(outcome, Delivered | Retryable) else None
        self.sends.append(_Send(state, start, time.monotonic(), status))
        return outcome


def _unique_id(body: bytes) -> str:
    return str(json.loads(body)["data"]["attributes"]["unique_id"])


# ----------------------------------------------------------------------------- serve and status


def test_connections_to_one_klaviyo_account_share_one_circuit_and_others_do_not(tmp_path: Path) -> None:
    for public_key, shared in ((PUBLIC_KEY, True), ("OTHER1", False)):
        directory = tmp_path / public_key
        directory.mkdir()
        path = write_service_config(directory, "http://127.0.0.1:9", free_port())
        second: dict[str, object] = {"public_api_key": public_key, "klaviyo_url": "http://127.0.0.1:9"}
        second |= {"events_api_key": "b", "events_api_secret": "b-secret"}
        if shared:
            second["rate_limits"] = {endpoint: list(limits) for endpoint, limits in FAST_LIMITS.items()}
        lines = ["", "[connections.beta]"] + [f"{k} = {toml(v)}" for k, v in second.items()]
        path.write_text(path.read_text() + "\n".join(lines) + "\n")
        service = Service(load_config(path))
        try:
            acme, beta = service.dispatchers["acme"].circuit, service.dispatchers["beta"].circuit
            assert (acme is beta) is shared
            assert isinstance(acme.listener, OutageReport)
            assert sorted(acme.listener.connections) == (["acme", "beta"] if shared else ["acme"])
        finally:
            asyncio.run(service.store.close())
            service.release_owner()


def test_status_says_since_when_klaviyo_is_unreachable_for_a_connection(tmp_path: Path) -> None:
    async def scenario() -> None:
        sock = _refusing_socket()
        port = free_port()
        config = write_service_config(tmp_path, f"http://127.0.0.1:{sock.getsockname()[1]}", port)
        service = ServeProcess(config, port, tmp_path / "serve.log")
        try:
            await service.start()
            async with aiohttp.ClientSession() as session:
                assert await post_bulk(session, service.url, _batches(10)) == 202

                async def unreachable() -> bool:
                    async with session.get(f"{service.url}/metrics") as response:
                        text = await response.text()
                    return re.search(rf'^{UNREACHABLE}{{connection="acme"}} [1-9]', text, re.MULTILINE) is not None

                await wait_until(unreachable, 20.0, "the circuit to open")
            code, out, err = await run_cli("status", "--config", str(config), "--sample", "0", cwd=tmp_path)
        finally:
            await service.ensure_stopped()
            sock.close()
        assert code == 0, err
        [line] = [line for line in out.splitlines() if "Klaviyo unreachable since" in line]
        assert re.search(r"acme: Klaviyo unreachable since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line), line
        logged = [
            json.loads(line) for line in (tmp_path / "serve.log").read_text().splitlines() if "unreachable" in line
        ]
        assert [(entry["level"], entry["connections"]) for entry in logged] == [("warning", ["acme"])]

    run_async(scenario(), timeout_s=60)
