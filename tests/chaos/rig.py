"""The chaos rig: a real ``serve`` process and emulator on loopback, and clients that misbehave.

Every scenario is bounded in time and traffic, talks only to 127.0.0.1, and ends what it
started (``ServeRig`` is an async context manager whose exit stops everything).
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import sqlite3
import time
import zlib
from collections import Counter
from collections.abc import Callable, Coroutine
from contextlib import closing
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import msgspec
from aiohttp import web

from mparticle_klaviyo.jobs.plan import EVENT, unique_id_of
from mparticle_klaviyo.klaviyo.emulator import RunningEmulator, start_emulator
from mparticle_klaviyo.klaviyo.emulator.faults import parse_rule
from mparticle_klaviyo.store.base import JobState
from tests.service.served import Served, write_config

T = TypeVar("T")

TOKEN = "chaos-firehose-token-0123456789"
KEY = "chaos-key"
SECRET = "chaos-secret-0123456789"
WEBHOOK = "Bearer chaos-webhook-0123456789"


def basic() -> dict[str, str]:
    """HTTP Basic credentials of the rig's connection."""
    return {"Authorization": "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()}


def connection_table(klaviyo_url: str) -> dict[str, Any]:
    """The one connection, with every input enabled."""
    return {
        "public_api_key": "DEMO01",
        "klaviyo_url": klaviyo_url,
        "firehose_token": TOKEN,
        "events_api_key": KEY,
        "events_api_secret": SECRET,
        "webhook_authorization": WEBHOOK,
    }


def user_batch(n: int) -> dict[str, Any]:
    """A batch with one custom event of a user of its own; message ids are unique per ``n``."""
    return {
        "user_identities": {"email": f"chaos{n}@example.com"},
        "events": [
            {
                "event_type": "custom_event",
                "data": {"event_name": "Chaos", "source_message_id": f"chaos-{n}", "timestamp_unixtime_ms": 1.7e12},
            }
        ],
    }


@cache
def gzip_bomb(inflated_mib: int = 256) -> bytes:
    """A gzip body of ~1 KB per MiB that inflates to ``inflated_mib`` MiB of zeros."""
    compressor = zlib.compressobj(9, wbits=16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join([*(compressor.compress(zeros) for _ in range(inflated_mib)), compressor.flush()])


class ServeRig:
    """``serve`` (subprocess) delivering to an in-process emulator, for one scenario."""

    def __init__(self, directory: Path, **service: Any) -> None:
        self.directory = directory
        self.service = service
        self.emulator: RunningEmulator | None = None
        self.served: Served | None = None
        self.session: aiohttp.ClientSession | None = None
        self.config: Path | None = None
        self.refusing: socket.socket | None = None  # the emulator's port while Klaviyo is down

    async def __aenter__(self) -> ServeRig:
        self.emulator = await start_emulator()
        config = write_config(self.directory, {"chaos": connection_table(self.emulator.url)}, **self.service)
        self.config = config
        self.served = await Served.start(config)
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            if self.session is not None:
                await self.session.close()
            if self.served is not None:
                await self.served.stop()
        finally:
            if self.refusing is not None:
                self.refusing.close()
            elif self.emulator is not None:
                await self.emulator.close()

    @property
    def url(self) -> str:
        """The serve process's base URL."""
        assert self.served is not None
        return self.served.url

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of the serve process."""
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        return host, int(port)

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, float]:
        """POST and return (status, seconds it took)."""
        assert self.session is not None
        started = time.monotonic()
        async with self.session.post(self.url + path, data=body, headers=headers) as response:
            await response.read()
            return response.status, time.monotonic() - started

    async def get(self, path: str) -> tuple[int, float]:
        """GET and return (status, seconds it took)."""
        assert self.session is not None
        started = time.monotonic()
        async with self.session.get(self.url + path) as response:
            await response.read()
            return response.status, time.monotonic() - started

    async def events_recorded(self) -> list[str]:
        """The unique ids the emulator recorded."""
        assert self.emulator is not None and self.session is not None
        async with self.session.get(f"{self.emulator.url}/_emulator/state") as response:
            state = await response.json()
        return [event["unique_id"] for event in state["events"]]

    # ------------------------------------------------------------------------- infrastructure chaos

    @property
    def store(self) -> Path:
        """The store file serve was configured with."""
        return Path(self.service.get("store", self.directory / "jobs.sqlite3"))

    def recorded(self) -> Counter[str]:
        """How many times the emulator recorded each unique id (read in-process: works while Klaviyo is down)."""
        assert self.emulator is not None
        return Counter(str(event["unique_id"]) for event in self.emulator.emulator.state.events)

    def klaviyo_state(self) -> dict[str, Any]:
        """The emulator's ``/_emulator/state`` document, read in-process."""
        assert self.emulator is not None
        return self.emulator.emulator.state.snapshot()

    def add_fault(self, rule: dict[str, Any]) -> None:
        """Add an emulator fault rule (see ``POST /_emulator/faults``)."""
        assert self.emulator is not None
        self.emulator.emulator.faults.add(parse_rule(rule))

    async def klaviyo_down(self) -> None:
        """Klaviyo goes away: the emulator closes its listener and connections; its port refuses connections."""
        assert self.emulator is not None and self.refusing is None
        port = int(self.emulator.url.rsplit(":", 1)[1])
        await self.emulator.close()
        refusing = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        refusing.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        refusing.bind(("127.0.0.1", port))  # bound, not listening: every connect is refused
        self.refusing = refusing

    async def klaviyo_up(self) -> None:
        """Klaviyo is back: the same emulator (same state) listens on its old port again."""
        assert self.emulator is not None and self.refusing is not None
        runner = web.AppRunner(self.emulator.emulator.app(), access_log=None, handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, self.refusing).start()
        self.emulator = RunningEmulator(self.emulator.emulator, runner, self.emulator.url)
        self.refusing = None

    async def kill(self) -> None:
        """``kill -9`` serve and wait until it is gone; its output so far stays in ``served``."""
        assert self.served is not None
        self.served.process.kill()
        await self.served.process.wait()
        await self.served.stop()

    async def restart(self) -> None:
        """SIGTERM serve (if it still runs) and start it again on the same config: same store, new port."""
        assert self.served is not None and self.config is not None
        await self.served.stop()
        self.served = await Served.start(self.config)

    def stored(self) -> dict[str, JobState]:
        """Unique id -> state of each event job in the store file (read-only, as an operator would)."""
        if not self.store.exists():
            return {}
        with closing(sqlite3.connect(f"file:{self.store}?mode=ro", uri=True, timeout=10)) as db:
            rows = db.execute("SELECT key, state FROM jobs WHERE kind = ?", (EVENT,)).fetchall()
        return {unique_id_of(str(key)): JobState(state) for key, state in rows}


async def trickle(address: tuple[str, int], head: bytes, body: bytes, every_s: float, stop: asyncio.Event) -> bytes:
    """Send ``head`` at once, then ``body`` one byte every ``every_s``; what the server answered."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(head)
        await writer.drain()
        for byte in body:
            if stop.is_set() or reader.at_eof():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            try:
                return await asyncio.wait_for(reader.read(4096), every_s)
            except TimeoutError:
                continue
        return b""
    except ConnectionError:
        return b""
    finally:
        writer.close()


def request_head(path: str, length: int, headers: dict[str, str] | None = None) -> bytes:
    """An HTTP/1.1 POST head announcing ``length`` body bytes."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def json_body(document: Any) -> bytes:
    """A document as request bytes."""
    return json.dumps(document).encode()


# ----------------------------------------------------------------------------- steady traffic

P99_BOUND_S = 2.0  # an authenticated client is answered within this, 99 times in 100, whatever goes wrong
EVENTS_HEADERS = {"Content-Type": "application/json", **basic()}
TIMEOUT = "timeout"  # Answer.error of a post that got no answer in time


def unique_id(n: int) -> str:
    """The Klaviyo ``unique_id`` of ``user_batch(n)``'s event: its ``source_message_id``."""
    return f"chaos-{n}"


class Answer(msgspec.Struct, frozen=True):
    """How one POST went: ``status`` None when no HTTP answer came (``error`` says why)."""

    n: int
    status: int | None
    sent_at: float  # time.monotonic() as it went out
    seconds: float
    error: str | None = None


class Sender:
    """Posts ``user_batch(n)``, n = 0, 1, 2 ..., to ``/v2/events`` at a steady rate and notes every answer.

    Each post goes out on time whatever happens to the others (an open loop, as many independent
    clients would send); ``resend`` posts the refused ones again until they get a 202.
    """

    def __init__(self, rig: ServeRig, rate: float = 25.0, timeout_s: float = 10.0) -> None:
        self.rig = rig
        self.rate = rate
        self.answers: list[Answer] = []
        self.resent: set[str] = set()  # unique ids acknowledged on a resend
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._stop = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._posts: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Sender:
        self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._loop = asyncio.create_task(self._send())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            await self.stop()
        finally:
            assert self._session is not None
            await self._session.close()

    async def stop(self) -> None:
        """Send nothing more; wait for the answers still due."""
        self._stop.set()
        if self._loop is not None:
            await self._loop
        await asyncio.gather(*self._posts)

    async def _send(self) -> None:
        started = time.monotonic()
        n = 0
        while not self._stop.is_set():
            post = asyncio.create_task(self._record(n))
            self._posts.add(post)
            post.add_done_callback(self._posts.discard)
            n += 1
            due = started + n / self.rate
            try:
                await asyncio.wait_for(self._stop.wait(), max(0.0, due - time.monotonic()))
            except TimeoutError:
                continue

    async def _record(self, n: int) -> None:
        sent_at = time.monotonic()
        status, error = await self.post(n)
        self.answers.append(Answer(n, status, sent_at, time.monotonic() - sent_at, error))

    async def post(self, n: int) -> tuple[int | None, str | None]:
        """POST ``user_batch(n)`` once: (status, None), or (None, the error's name) when no answer came."""
        assert self._session is not None
        url = self.rig.url + "/v2/events"
        try:
            async with self._session.post(url, data=json_body(user_batch(n)), headers=EVENTS_HEADERS) as response:
                await response.read()
                return response.status, None
        except (aiohttp.ClientError, TimeoutError) as error:
            return None, TIMEOUT if isinstance(error, TimeoutError) else type(error).__name__

    async def resend(self, numbers: list[int], timeout_s: float = 20.0) -> None:
        """Post each of ``numbers`` again until it gets a 202 (within ``timeout_s`` each), as mParticle would."""
        for n in numbers:
            deadline = time.monotonic() + timeout_s
            while (answer := await self.post(n))[0] != 202:
                assert time.monotonic() < deadline, f"event {n} still refused after {timeout_s} s: {answer}"
                await asyncio.sleep(0.1)
            self.resent.add(unique_id(n))

    def acked(self) -> set[str]:
        """Unique ids of every event answered 202 (on its first post or a resend)."""
        return {unique_id(a.n) for a in self.answers if a.status == 202} | self.resent

    def unacked(self) -> list[int]:
        """Numbers of the events whose post got no 202."""
        acked = {a.n for a in self.answers if a.status == 202}
        return sorted({a.n for a in self.answers} - acked)

    def since(self, moment: float) -> list[Answer]:
        """The answers to posts that went out at or after ``moment`` (time.monotonic())."""
        return [a for a in self.answers if a.sent_at >= moment]


async def until(condition: Callable[[], bool], timeout_s: float, what: str, every_s: float = 0.05) -> None:
    """Poll ``condition`` until it holds; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(every_s)


def bounded(scenario: Callable[[], Coroutine[Any, Any, T]], timeout_s: float) -> T:
    """Run ``scenario`` in a fresh loop, cancelled (its ``finally`` blocks run) after ``timeout_s``."""
    return asyncio.run(asyncio.wait_for(scenario(), timeout_s))


def assert_served_within(answers: list[Answer], p99_s: float = P99_BOUND_S) -> float:
    """Every post that reached a listening serve was answered, 99 % of them within ``p99_s``; the p99."""
    took = sorted(a.seconds for a in answers if a.status is not None or a.error == TIMEOUT)
    assert took, "no post was answered"
    p99 = took[min(len(took) - 1, int(len(took) * 0.99))]
    assert p99 < p99_s, f"p99 {p99:.3f} s over {len(took)} answers; slowest {[round(t, 3) for t in took[-5:]]}"
    return p99


async def assert_delivered_once(rig: ServeRig, acked: set[str], timeout_s: float) -> None:
    """Every acknowledged event reaches Klaviyo within ``timeout_s``, is recorded once, and none is dead-lettered."""
    try:
        await until(lambda: acked <= set(rig.recorded()), timeout_s, "every acknowledged event at Klaviyo")
    except AssertionError:
        raise AssertionError(missing_events(rig, acked, timeout_s)) from None
    recorded = rig.recorded()
    assert max(recorded.values(), default=1) == 1, [i for i, times in recorded.items() if times > 1][:5]
    state = rig.klaviyo_state()
    assert state["rejected"] == [] and state["violations"] == [], (state["rejected"][:3], state["violations"][:3])
    dead = sorted(i for i, job in rig.stored().items() if job is JobState.DEAD)
    assert not dead, f"{len(dead)} events dead-lettered, e.g. {dead[:5]}"


def missing_events(rig: ServeRig, acked: set[str], timeout_s: float) -> str:
    """Which acknowledged events are not at Klaviyo: still queued (late), or lost (dead, or gone from the store)."""
    stored = rig.stored()
    missing = acked - set(rig.recorded())
    lost = sorted(i for i in missing if stored.get(i) not in (JobState.READY, JobState.LEASED))
    return (
        f"{len(missing)} acknowledged events not at Klaviyo after {timeout_s} s: {len(missing) - len(lost)} "
        f"still queued, {len(lost)} lost (e.g. {lost[:5]})"
    )
