"""A real HTTP server on loopback that answers a scripted sequence and records what it received."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web


@dataclass(frozen=True)
class Step:
    """One scripted answer: a status with headers and body, after a delay, or a connection reset."""

    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0
    reset: bool = False


@dataclass(frozen=True)
class Received:
    """One request as the server saw it; ``at`` and ``answered_at`` are ``time.monotonic()``."""

    at: float
    answered_at: float
    status: int | None
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int] | None


def error_body(status: int, code: str, detail: str, pointer: str = "/data") -> bytes:
    """A Klaviyo-style JSON:API error body."""
    error = {"status": status, "code": code, "title": code, "detail": detail, "source": {"pointer": pointer}}
    return json.dumps({"errors": [error]}).encode()


class ScriptedServer:
    """Answers requests, in arrival order, with ``script`` and then with ``default`` forever."""

    def __init__(self, script: Iterable[Step] = (), default: Step | None = None) -> None:
        self._script = deque(script)
        self._default = default if default is not None else Step()
        self.received: list[Received] = []
        self.arrivals: list[float] = []  # recorded on arrival, before any scripted delay
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> ScriptedServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # A short shutdown: tests end with handlers still sleeping on scripted delays.
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def statuses(self) -> list[int | None]:
        """Statuses answered so far, in arrival order (None for a reset)."""
        return [r.status for r in self.received]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        self.arrivals.append(arrived)
        body = await request.read()
        step = self._script.popleft() if self._script else self._default
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        self._record(request, body, arrived, step)
        if step.reset:
            _reset(request)
            raise asyncio.CancelledError  # aiohttp drops the handler quietly on cancellation
        return web.Response(status=step.status, headers=step.headers, body=step.body)

    def _record(self, request: web.Request, body: bytes, arrived: float, step: Step) -> None:
        self.received.append(
            Received(
                at=arrived,
                answered_at=time.monotonic(),
                status=None if step.reset else step.status,
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers=dict(request.headers),
                body=body,
                peer=_peer(request),
            )
        )


def _reset(request: web.Request) -> None:
    """Abort the connection with an RST (SO_LINGER 0), as a crashed proxy would."""
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _peer(request: web.Request) -> tuple[str, int] | None:
    """The client's (host, port): the same port twice means a reused keep-alive connection."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    return (str(peer[0]), int(peer[1])) if peer else None
