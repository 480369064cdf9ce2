"""Helpers for the delivery tests: batches, a recording emulator, a real store, a dispatcher run.

Everything here is a real component: the strict emulator on a loopback port (with a middleware
that notes when each request arrived), the SQLite job store in a temporary directory, the real
Klaviyo client and the real ``Dispatcher``. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
from aiohttp import web

from mparticle_klaviyo.config import Connection, ConnectionSettings
from mparticle_klaviyo.delivery.dispatch_options import DispatchOptions
from mparticle_klaviyo.delivery.dispatcher import Dispatcher
from mparticle_klaviyo.jobs.plan import plan_jobs
from mparticle_klaviyo.klaviyo.client import KlaviyoClient
from mparticle_klaviyo.klaviyo.emulator import Emulator, EmulatorConfig, RunningEmulator
from mparticle_klaviyo.mparticle.decode import decode_document
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.base import DeadFilter, EnqueueResult, Job
from mparticle_klaviyo.store.sqlite import SqliteJobStore

PUBLIC_KEY = "DEMO01"
PRIVATE_KEY = "pk_demo_private_key"
LIST_ID = "LIST01"
EVENTS_KEY = "ingest-key"
EVENTS_SECRET = "ingest-secret"
FAST_LIMITS = {
    "POST /client/events": (1000, 60000),
    "POST /client/subscriptions": (1000, 60000),
    "POST /api/event-bulk-create-jobs": (100, 6000),
    "POST /api/profile-subscription-bulk-create-jobs": (100, 6000),
}
# Short waits everywhere, so that retry paths finish within a test's time.
FAST = DispatchOptions(
    poll_s=0.05,
    backoff_base_s=0.05,
    backoff_cap_s=0.2,
    default_retry_after_s=0.5,
    release_every_s=0.5,
    lease_s=30.0,
)


# ----------------------------------------------------------------------------- input batches


def custom_event(message_id: str, name: str = "Clicked", ms: int | None = None) -> dict[str, Any]:
    """A custom event whose ``source_message_id`` (hence its Klaviyo ``unique_id``) is ``message_id``."""
    stamp = int(time.time() * 1000) if ms is None else ms
    data = {"event_name": name, "custom_event_type": "other", "source_message_id": message_id}
    return {"event_type": "custom_event", "data": {**data, "timestamp_unixtime_ms": stamp}}


def purchase_event(message_id: str, products: int = 2) -> dict[str, Any]:
    """A purchase: one order plus one event per product at Klaviyo."""
    items = [{"id": f"SKU-{n}", "name": f"Item {n}", "price": 2.5, "quantity": 1} for n in range(products)]
    action = {"action": "purchase", "transaction_id": f"T-{message_id}", "total_amount": 2.5 * products}
    return {
        "event_type": "commerce_event",
        "data": {
            "source_message_id": message_id,
            "timestamp_unixtime_ms": int(time.time() * 1000),
            "currency_code": "USD",
            "product_action": {**action, "products": items},
        },
    }


def user_batch(user: str, events: list[dict[str, Any]], *, consent: bool = False) -> dict[str, Any]:
    """One user's batch (iOS, email identity) with ``events``; ``consent`` grants email marketing."""
    batch: dict[str, Any] = {
        "environment": "production",
        "device_info": {"platform": "iOS"},
        "user_identities": {"email": f"{user}@example.com"},
        "events": events,
    }
    if consent:
        grant = {"consented": True, "timestamp_unixtime_ms": 1_764_300_000_000}
        batch["consent_state"] = {"gdpr": {"email_marketing": grant}}
    return batch


# ----------------------------------------------------------------------------- connections


def connection(url: str, *, server: bool = False, name: str = "acme", **settings: Any) -> Connection:
    """A validated connection aimed at ``url`` (server mode with ``server=True``)."""
    table: dict[str, Any] = {
        "public_api_key": PUBLIC_KEY,
        "list_id": LIST_ID,
        "klaviyo_url": url,
        "consent_mapping": {"email_marketing": "email"},
        "rate_limits": {endpoint: list(limits) for endpoint, limits in FAST_LIMITS.items()},
        **settings,
    }
    if server:
        table.setdefault("private_api_key", PRIVATE_KEY)
    return Connection(name, ConnectionSettings.model_validate(table), table)


def client_for(conn: Connection, timeout_s: float = 5.0) -> KlaviyoClient:
    """The real Klaviyo client for ``conn``."""
    return KlaviyoClient(
        public_key=conn.public_key,
        private_key=conn.private_key,
        base_url=conn.klaviyo_url,
        revision=conn.revision,
        timeout_s=timeout_s,
    )


# ----------------------------------------------------------------------------- emulator


class Arrival(msgspec.Struct, frozen=True):
    """One request as the emulator saw it arrive (control requests excluded)."""

    at: float  # time.monotonic() when the request reached the emulator
    path: str
    status: int  # 0: the connection was reset, no answer
    retry_after: float | None = None
    events: int = 0  # events in a server-mode bulk job


class RecordingEmulator:
    """The strict emulator, plus the arrival time and answer of every Klaviyo request."""

    def __init__(self, running: RunningEmulator, arrivals: list[Arrival]) -> None:
        self.running = running
        self.emulator = running.emulator
        self.url = running.url
        self.arrivals = arrivals

    def state(self) -> dict[str, Any]:
        """The emulator's inspection document (what ``GET /_emulator/state`` serves)."""
        return self.emulator.state.snapshot()

    def unique_ids(self) -> list[str]:
        """The ``unique_id`` of every recorded event, repeats included."""
        return [str(event["unique_id"]) for event in self.emulator.state.events]

    def add_fault(self, rule: dict[str, Any]) -> None:
        """Add a fault rule through the control endpoint's own parser."""
        from mparticle_klaviyo.klaviyo.emulator.faults import parse_rule

        self.emulator.faults.add(parse_rule(rule))

    def statuses(self, path: str | None = None) -> list[int]:
        """Answer statuses in arrival order (of one path, or all)."""
        return [a.status for a in self.arrivals if path is None or a.path == path]

    async def close(self) -> None:
        """Stop listening."""
        await self.running.close()


async def start_recording_emulator(config: EmulatorConfig | None = None) -> RecordingEmulator:
    """Start an emulator in the running loop whose middleware records each request's arrival."""
    arrivals: list[Arrival] = []

    @web.middleware
    async def record(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        at = time.monotonic()
        if request.path.startswith("/_emulator"):
            return await handler(request)
        events = _bulk_events(await request.read()) if request.path == "/api/event-bulk-create-jobs" else 0
        try:
            response = await handler(request)
        except BaseException:
            arrivals.append(Arrival(at, request.path, 0, events=events))
            raise
        retry_after = response.headers.get("Retry-After")
        status = 0 if request.transport is None or request.transport.is_closing() else response.status
        arrivals.append(Arrival(at, request.path, status, float(retry_after) if retry_after else None, events))
        return response

    emulator = Emulator(config or EmulatorConfig(rate_limits=dict(FAST_LIMITS)))
    app = emulator.app()
    app.middlewares.append(record)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.create_server(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    port = sock.getsockname()[1]
    return RecordingEmulator(RunningEmulator(emulator, runner, f"http://127.0.0.1:{port}"), arrivals)


def _bulk_events(body: bytes) -> int:
    try:
        entries = json.loads(body)["data"]["attributes"]["events-bulk-create"]["data"]
        return sum(len(entry["attributes"]["events"]["data"]) for entry in entries)
    except (ValueError, KeyError, TypeError):
        return 0


def gate_violations(arrivals: list[Arrival], default_gate_s: float, slack_s: float = 0.1) -> list[Arrival]:
    """Requests that reached the emulator while a 429 had the client's gate (of their path) closed.

    A 429 that arrived at ``t`` closes the gate from when its answer is read (at ``t`` or later)
    for Retry-After seconds, so nothing may arrive in ``(t + slack, t + retry_after)``: the slack
    lets through requests that were already on their way when the 429 was answered.
    """
    windows = [
        (a.path, a.at + slack_s, a.at + (a.retry_after if a.retry_after is not None else default_gate_s) - 0.01)
        for a in arrivals
        if a.status == 429
    ]
    # One gate per endpoint: a 429 of one path says nothing about another.
    return [a for a in arrivals if any(path == a.path and start < a.at < end for path, start, end in windows)]


# ----------------------------------------------------------------------------- store and dispatcher


def open_store(path: Path) -> AsyncStore:
    """A real SQLite job store at ``path``, driven from asyncio."""
    return AsyncStore(SqliteJobStore(path))


async def enqueue(store: AsyncStore, conn: Connection, batches: list[dict[str, Any]]) -> EnqueueResult:
    """Plan ``batches`` exactly as ingest does and commit their jobs."""
    decoded = decode_document(json.dumps(batches).encode())
    planned = plan_jobs(decoded, conn, time.time() * 1000)
    return await store.enqueue(planned.jobs, time.time())


async def dead_jobs(store: AsyncStore, conn: Connection | None = None) -> list[Job]:
    """Every dead job (of one connection, or all)."""
    return await store.dead(DeadFilter(connection=conn.name if conn else None), 10_000)


async def wait_until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


class Delivery:
    """A dispatcher running in the current loop on a real store, client and emulator."""

    def __init__(
        self,
        conn: Connection,
        store: AsyncStore,
        options: DispatchOptions = FAST,
        *,
        timeout_s: float = 5.0,
        rng: random.Random | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn = conn
        self.store = store
        self.client = client_for(conn, timeout_s)
        self.metrics = Metrics()
        self.dispatcher = Dispatcher(conn, store, self.client, self.metrics, options, rng, wall_clock=wall_clock)
        self.stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._shut_down = False

    def start(self) -> None:
        """Start delivering in the background."""
        self._task = asyncio.create_task(self.dispatcher.run(self.stop))

    async def until_empty(self, timeout_s: float = 15.0) -> None:
        """Wait until nothing of this connection is ready or leased (delivered or dead)."""

        async def empty() -> bool:
            if self._task is not None and self._task.done():
                self._task.result()  # surface a crashed loop instead of timing out
            return await self.store.backlog(self.conn.name) == 0 and not self.dispatcher.busy()

        await wait_until(empty, timeout_s, "an empty backlog")

    async def shutdown(self, drain_s: float = 5.0) -> None:
        """Stop claiming, let in-flight units finish (or release them), close the client; once."""
        if self._shut_down:
            return  # a test shut down before its assertions; the rig's teardown calls again
        self._shut_down = True
        self.stop.set()
        # Each step runs even if the one before raised (a crashed loop): no lease or session is left.
        try:
            if self._task is not None:
                await self._task
        finally:
            try:
                await self.dispatcher.drain(drain_s)
            finally:
                await self.client.close()


def options(**changes: Any) -> DispatchOptions:
    """``FAST`` with some knobs changed."""
    return msgspec.structs.replace(FAST, **changes)


def run_async(coro: Awaitable[None], timeout_s: float = 60.0) -> None:
    """Run ``coro`` on a fresh loop with a deadline (pytest-asyncio is not installed)."""

    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout_s)

    asyncio.run(bounded())


# ----------------------------------------------------------------------------- the serve process


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_service_config(
    directory: Path, klaviyo_url: str, port: int, *, service: dict[str, Any] | None = None, **settings: Any
) -> Path:
    """A config file with a [service] table and one connection ``acme`` taking Events API batches."""
    service_table = {
        "host": "127.0.0.1",
        "port": port,
        "store": str(directory / "jobs.sqlite3"),
        "lease_s": 3.0,
        "shutdown_timeout_s": 5.0,
        "log_level": "warning",
        **(service or {}),
    }
    table: dict[str, Any] = {
        "public_api_key": PUBLIC_KEY,
        "list_id": LIST_ID,
        "klaviyo_url": klaviyo_url,
        "events_api_key": EVENTS_KEY,
        "events_api_secret": EVENTS_SECRET,
        "consent_mapping": {"email_marketing": "email"},
        "rate_limits": {endpoint: list(limits) for endpoint, limits in FAST_LIMITS.items()},
        **settings,
    }
    lines = ["[service]"] + [f"{k} = {toml(v)}" for k, v in service_table.items()]
    lines += ["", "[connections.acme]"] + [f"{k} = {toml(v)}" for k, v in table.items()]
    path = directory / "service.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def toml(value: Any) -> str:
    """A TOML literal for strings, numbers, booleans, lists and inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return json.dumps(value)


def basic_auth(key: str = EVENTS_KEY, secret: str = EVENTS_SECRET) -> str:
    """The Events API's HTTP Basic header value."""
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


class ServeProcess:
    """``python -m mparticle_klaviyo serve --config F`` as a child process of the test."""

    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.config = config
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self, timeout_s: float = 15.0) -> None:
        """Start the service and wait until /readyz says ready."""
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "mparticle_klaviyo",
                "serve",
                "--config",
                str(self.config),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        await wait_until(self._ready, timeout_s, f"serve to be ready (log: {self.log})")

    async def _ready(self) -> bool:
        assert self.process is not None
        if self.process.returncode is not None:
            raise AssertionError(f"serve exited with {self.process.returncode}: {self.log.read_text()[-2000:]}")
        try:
            async with aiohttp.ClientSession() as session, session.get(f"{self.url}/readyz") as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout_s)

    async def ensure_stopped(self) -> None:
        """Kill the process if it is still running (test cleanup)."""
        if self.process is not None and self.process.returncode is None:
            await self.kill()


@asynccontextmanager
async def recording_emulator(
    config: EmulatorConfig | None = None, faults: Sequence[dict[str, Any]] = ()
) -> AsyncIterator[RecordingEmulator]:
    """A recording emulator with ``faults`` added, closed at the end."""
    emulator = await start_recording_emulator(config)
    try:
        for fault in faults:
            emulator.add_fault(fault)
        yield emulator
    finally:
        await emulator.close()


@asynccontextmanager
async def serving(
    directory: Path,
    klaviyo_url: str,
    *,
    service: dict[str, Any] | None = None,
    start_timeout_s: float = 15.0,
    **settings: Any,
) -> AsyncIterator[ServeProcess]:
    """``serve`` as a child process on ``write_service_config``'s file, ready; killed at the end if still running.

    Its log is ``directory/serve.log``; the config is ``.config``, the URL ``.url``.
    """
    port = free_port()
    config = write_service_config(directory, klaviyo_url, port, service=service, **settings)
    serve = ServeProcess(config, port, directory / "serve.log")
    try:
        await serve.start(start_timeout_s)
        yield serve
    finally:
        await serve.ensure_stopped()


async def post_bulk(session: aiohttp.ClientSession, url: str, batches: list[dict[str, Any]]) -> int:
    """POST batches to ``/v2/bulkevents``; the HTTP status, or 0 when the service was unreachable."""
    try:
        async with session.post(
            f"{url}/v2/bulkevents", json=batches, headers={"Authorization": basic_auth()}
        ) as response:
            await response.read()
            return response.status
    except (TimeoutError, aiohttp.ClientError):
        return 0


async def run_cli(*args: str, cwd: Path, timeout_s: float = 60.0) -> tuple[int, str, str]:
    """``python -m mparticle_klaviyo ARGS``: exit code, stdout, stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mparticle_klaviyo",
        *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "COLUMNS": "200"},
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    return process.returncode or 0, stdout.decode(), stderr.decode()
