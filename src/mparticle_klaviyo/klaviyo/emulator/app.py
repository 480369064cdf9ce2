"""The HTTP front: one catch-all handler running every request through Klaviyo's rules in order.

Order: fault injection → path (404 unknown, 410 retired, 405 wrong method) → ``revision`` →
content type → auth (``company_id`` or private key) → rate limit (counted from here on, so
invalid bodies use quota as at Klaviyo) → body size and JSON → schema → operation rules →
record. Paths are matched with or without a trailing slash.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import TYPE_CHECKING

from aiohttp import web

from . import checks, control
from .context import Ctx, Reply
from .errors import JSON_API, ApiError, not_found, server_fault, throttled
from .faults import FaultRule
from .operations import EVENT_BODY_LIMIT, OPERATIONS, Operation, legacy_replacements
from .rules import revision_date
from .schema import validate

if TYPE_CHECKING:
    from .core import Emulator

_LINGER_RESET = struct.pack("ii", 1, 0)


class Gateway:
    """The request handler of one emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request to a Klaviyo path."""
        emulator = self.emulator
        emulator.state.requests += 1
        path = request.path.rstrip("/") or "/"
        if emulator.faults.rules:
            rule = emulator.faults.pick(path)
            if rule is not None:
                faulted = await self._fault(request, rule)
                if faulted is not None:
                    return faulted
        headers: dict[str, str] = {}
        try:
            reply = await self._process(request, path, headers)
        except ApiError as error:
            return self._error(request, error, headers)
        return self._success(reply, headers)

    async def _process(self, request: web.Request, path: str, headers: dict[str, str]) -> Reply:
        op = _operation(request, path)
        config, state = self.emulator.config, self.emulator.state
        now = config.clock()
        revision = checks.check_revision(request.headers.get("revision"), config, now, op)
        checks.check_content_type(request)
        account, record = self._authenticate(request, op)
        verdict = self.emulator.limiter.take(account, op.endpoint, now)
        if not verdict.allowed:
            raise throttled(verdict.retry_after)
        headers.update(verdict.headers)
        body = await checks.read_body(request, op.max_body)
        validate(op.schema_at(revision_date(revision)), body)
        ctx = Ctx(account, revision, now, op.endpoint, op.client, record, state, config)
        reply = op.handler(ctx, body)
        if ctx.partial:
            state.partial_failures += 1
            headers["X-Klaviyo-Partial-Failure"] = ",".join(sorted(ctx.partial))
        # An unknown company configured to get a 2xx is answered with exactly that status.
        return reply if record else Reply(config.unknown_company_status)

    def _authenticate(self, request: web.Request, op: Operation) -> tuple[str, bool]:
        """The account to charge, and whether the request may be recorded."""
        config = self.emulator.config
        if op.client:
            return checks.client_account(request, config, self.emulator.state)
        return checks.server_account(request, config, op), True

    def _success(self, reply: Reply, headers: dict[str, str]) -> web.Response:
        headers.update(reply.headers)
        if not reply.body:
            return web.Response(status=reply.status, headers=headers)
        return web.Response(status=reply.status, body=reply.body, headers=headers, content_type=JSON_API)

    def _error(self, request: web.Request, error: ApiError, headers: dict[str, str]) -> web.Response:
        state = self.emulator.state
        if error.status == 429:
            state.throttled += 1
            headers = {}  # a 429 carries Retry-After only, never RateLimit-*
        else:
            state.reject(_rejection(request, error))
        return web.Response(
            status=error.status,
            body=error.body(),
            headers={**headers, **error.headers},
            content_type=JSON_API,
        )

    async def _fault(self, request: web.Request, rule: FaultRule) -> web.StreamResponse | None:
        self.emulator.state.faults_injected += 1
        if rule.delay_ms:
            await asyncio.sleep(rule.delay_ms / 1000)
        if rule.reset:
            _reset_connection(request)
            return web.Response(status=500)  # never reaches the client
        if rule.status is not None:
            error = server_fault(rule.status)
            return web.Response(status=error.status, body=error.body(), content_type=JSON_API)
        return None


def _operation(request: web.Request, path: str) -> Operation:
    op = OPERATIONS.get(path)
    if op is None:
        replacements = legacy_replacements(path)
        if replacements is not None:
            raise _gone(path, replacements)
        raise not_found(f"No endpoint at {path}.")
    if request.method != "POST":
        raise ApiError(
            405,
            "method_not_allowed",
            "Method not allowed.",
            f'Method "{request.method}" not allowed.',
            headers={"Allow": "POST"},
        )
    return op


def _gone(path: str, replacements: tuple[str, ...]) -> ApiError:
    names = ", ".join(replacements)
    return ApiError(
        410,
        "gone",
        "Gone.",
        f"{path} was retired on 2024-06-30 with the v1/v2 APIs. Use instead: {names}.",
        links={"migration": "https://developers.klaviyo.com/en/docs/migrating_from_v1v2_to_the_new_klaviyo_apis"},
        meta={"replacements": list(replacements)},
    )


def _rejection(request: web.Request, error: ApiError) -> dict[str, object]:
    return {
        "status": error.status,
        "method": request.method,
        "path": request.path,
        "code": error.code,
        "detail": error.detail,
        **error.source(),
    }


def _reset_connection(request: web.Request) -> None:
    """Close the connection with a TCP RST (SO_LINGER 0), as a dropped connection looks."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    transport.abort()


def create_app(emulator: Emulator) -> web.Application:
    """The aiohttp application serving ``emulator``: control routes, then every other path."""
    # Bodies over the largest endpoint limit stop being read early; checks turn that into 413.
    app = web.Application(client_max_size=EVENT_BODY_LIMIT + 1)
    control.add_routes(app, emulator)
    app.router.add_route("*", "/{tail:.*}", Gateway(emulator).handle)
    return app
