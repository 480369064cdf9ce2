"""HTTP ingest: Firehose, Events API and Webhook inputs -> durable jobs, answered after commit.

Every request runs the same steps: authenticate -> size limit -> decode (400 naming the field)
-> map once (what can never be sent is dropped and counted) -> backlog check (429/503 above
the high-water mark) -> one durable transaction -> 202. Nothing of a rejected request is stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar

import msgspec
from aiohttp import web

from mparticle_klaviyo.config import Config, Connection
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.erasure import plan_erasure
from mparticle_klaviyo.json_errors import decode_checked
from mparticle_klaviyo.mparticle.dsr import DSR_PROCESSING_REQUEST, decode_erasure
from mparticle_klaviyo.mparticle.firehose import EVENT_PROCESSING_REQUEST, MODULE_REGISTRATION_REQUEST, Envelope
from mparticle_klaviyo.mparticle.registration import FIREHOSE_VERSION, registration_response
from mparticle_klaviyo.observe.live import LiveTraffic
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.server import live_in
from mparticle_klaviyo.server.admission import PROCESSING_FACTOR, ByteBudget, Hold
from mparticle_klaviyo.server.auth import AuthError, events_api_connection, firehose_connection, webhook_connection
from mparticle_klaviyo.server.bodies import ReadDeadlines, content_encoding, declared_size, read_limited
from mparticle_klaviyo.server.errors import (
    AdmissionTimeoutError,
    BodyTimeoutError,
    ClientGoneError,
    PayloadTooLargeError,
    StoreUnavailableError,
    UnsupportedEncodingError,
    error_response,
    store_not_ready_response,
    store_unavailable_response,
)
from mparticle_klaviyo.server.openapi import openapi_document
from mparticle_klaviyo.server.plan_pool import PlanPool
from mparticle_klaviyo.server.planning import BodyPlan, Limits, Route, plan_body
from mparticle_klaviyo.server.refusals import authenticated, forget_connection, log_refusal
from mparticle_klaviyo.store.async_store import AsyncJobStore

log = logging.getLogger("mparticle_klaviyo.ingest")
_envelope = msgspec.json.Decoder(Envelope)
_UNSUPPORTED_FIREHOSE = {
    "audience_subscription_request": "audiences are not supported: this is an event integration",
    "audience_membership_change_request": "audiences are not supported: this is an event integration",
    "dsr_processing_request": "erasure requests are not supported by this connection: set forward_erasure",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A registration request is ~100 bytes: without credentials nothing larger is read.
UNAUTHENTICATED_BODY_LIMIT = 4096
_UNAUTHENTICATED_DEADLINES = ReadDeadlines(idle_s=5.0, total_s=5.0, grace_s=5.0)
# The memory reservation of the request being handled (each request runs in its own task).
_HOLD: ContextVar[Hold] = ContextVar("ingest_hold")


class Ingest:
    """The ingest endpoints' shared state: configuration, store, metrics, budget, backlog cache."""

    def __init__(
        self,
        config: Config,
        store: AsyncJobStore,
        metrics: Metrics,
        wake: Callable[[str], None],
        live: LiveTraffic | None = None,
        planner: PlanPool | None = None,
    ) -> None:
        self.config = config
        # Planning worker processes (``ingest_workers``); None or none running: plan here.
        self.planner = planner
        # The console's Live stream (``serve`` with its console on); None records nothing.
        self.live = live
        self.store = store
        self.metrics = metrics
        self.wake = wake
        self.ready = False
        # Registration declares erasure support when a connection forwards erasures.
        self._erasure = any(c.settings.forward_erasure for c in config.connections.values())
        self._backlog = 0
        self._backlog_at = 0.0
        service = config.service
        self.budget = ByteBudget(service.ingest_memory_budget_mb * 1024 * 1024)
        self.deadlines = ReadDeadlines(
            idle_s=service.body_idle_timeout_s, total_s=service.body_timeout_s, min_rate=service.body_min_rate
        )

    @asynccontextmanager
    async def admitted(self, request: web.Request, limit: int) -> AsyncIterator[bytes]:
        """The body of an authenticated request, read once the memory budget has room for it.

        Encoding and announced size are refused (415, 413) before the request waits; while it
        waits its body stays unread (aiohttp buffers at most ~64 KiB, then TCP pushes back).
        """
        compressed = content_encoding(request) is not None
        size = declared_size(request, limit)
        cost = (limit if compressed else size) * PROCESSING_FACTOR
        async with self.budget.reserve(cost, self.config.service.admission_timeout_s) as hold:
            token = _HOLD.set(hold)
            try:
                raw = await read_limited(request, limit, self.deadlines)
                live_in.note_body(raw)
                yield raw
            finally:
                _HOLD.reset(token)

    async def firehose(self, request: web.Request) -> web.StreamResponse:
        """``POST /firehose``: registration (no auth), event processing (Token auth)."""
        try:
            connection = authenticated(
                firehose_connection(request.headers.get("Authorization"), self.config.connections)
            )
        except AuthError as refused:
            return await self._unauthenticated_firehose(request, refused)
        async with self.admitted(request, self._bulk_limit()) as raw:
            kind = _envelope_type(raw)
            if kind == MODULE_REGISTRATION_REQUEST:
                return web.json_response(registration_response(_request_id(raw), erasure=self._erasure))
            if kind == DSR_PROCESSING_REQUEST and connection.settings.forward_erasure:
                return await self._erasure_request(raw, connection)
            if kind in _UNSUPPORTED_FIREHOSE:
                return error_response(400, "UNSUPPORTED", _UNSUPPORTED_FIREHOSE[kind or ""], "/type")
            if kind is None:
                raise InputError("/type", "required field is missing")
            if kind != EVENT_PROCESSING_REQUEST:
                return error_response(400, "BAD_REQUEST", f"unknown Firehose message type {kind!r}", "/type")
            plan = await self._accept(Route.FIREHOSE, raw, connection, "firehose")
        return web.json_response(
            {
                "type": "event_processing_response",
                "id": plan.batch_key or "",
                "timestamp_ms": int(time.time() * 1000),
                "firehose_version": FIREHOSE_VERSION,
            }
        )

    async def _unauthenticated_firehose(self, request: web.Request, refused: AuthError) -> web.StreamResponse:
        """Without valid credentials only a registration request is answered; it is small.

        So at most ``UNAUTHENTICATED_BODY_LIMIT`` bytes are read, under short deadlines and
        outside the memory budget; anything larger, slower or other is refused as unauthorised.
        """
        try:
            raw = await read_limited(request, UNAUTHENTICATED_BODY_LIMIT, _UNAUTHENTICATED_DEADLINES)
            registration = _envelope_type(raw) == MODULE_REGISTRATION_REQUEST
        except (PayloadTooLargeError, InputError, UnsupportedEncodingError):
            registration = False
        if not registration:
            raise refused
        return web.json_response(registration_response(_request_id(raw), erasure=self._erasure))

    async def _erasure_request(self, raw: bytes, connection: Connection) -> web.StreamResponse:
        """A ``dsr_processing_request`` (erasure): stored durably as a job, then answered."""
        job = plan_erasure(decode_erasure(raw), connection)
        await self._check_backlog("firehose")
        result = await self.store.enqueue([job], time.time())
        self.metrics.erasures.labels(connection.name).inc(result.stored)
        live_in.note_erasure()
        self.wake(connection.name)
        return web.json_response(
            {
                "type": "dsr_processing_response",
                "id": _request_id(raw) or "",
                "timestamp_ms": int(time.time() * 1000),
                "firehose_version": FIREHOSE_VERSION,
            }
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        """``POST /v2/events``: one batch, HTTP Basic auth."""
        connection = authenticated(events_api_connection(request.headers.get("Authorization"), self.config.connections))
        async with self.admitted(request, self.config.service.max_batch_bytes) as raw:
            await self._accept(Route.EVENTS, raw, connection, "events_api")
        return web.Response(status=202)

    async def bulk_events(self, request: web.Request) -> web.StreamResponse:
        """``POST /v2/bulkevents``: an array of up to 100 batches of up to 128 KB each."""
        connection = authenticated(events_api_connection(request.headers.get("Authorization"), self.config.connections))
        async with self.admitted(request, self._bulk_limit()) as raw:
            await self._accept(Route.BULK, raw, connection, "events_api")
        return web.Response(status=202)

    async def webhook(self, request: web.Request) -> web.StreamResponse:
        """``POST /webhook/{connection}``: mParticle's Webhook output (one batch or an array)."""
        name = request.match_info["connection"]
        connection = authenticated(
            webhook_connection(name, request.headers.get("Authorization"), self.config.connections)
        )
        async with self.admitted(request, self._bulk_limit()) as raw:
            await self._accept(Route.WEBHOOK, raw, connection, "webhook")
        return web.Response(status=202)

    async def _accept(self, route: Route, raw: bytes, connection: Connection, source: str) -> BodyPlan:
        """Plan, check the backlog, commit; raises ``BackpressureError``, ``InputError``, 413s."""
        planned = await self._plan(route, raw, connection)
        stored = duplicates = 0
        if planned.jobs:
            await self._check_backlog(source)
            result = await self.store.enqueue(planned.jobs, time.time())
            stored, duplicates = result.stored, result.duplicates
            self.metrics.queued.labels(connection.name).inc(stored)
            self.metrics.duplicates.labels(connection.name).inc(duplicates)
            self._backlog += stored
            self.wake(connection.name)
        live_in.note_planned(planned.events, stored, duplicates, planned.dropped)
        # Counted once the request is accepted: a refused one is sent again, and would count twice.
        self.metrics.received.labels(connection.name, source).inc(planned.events)
        for reason, count in planned.dropped.items():
            self.metrics.dropped.labels(connection.name, reason).inc(count)
        return planned

    async def _plan(self, route: Route, raw: bytes, connection: Connection) -> BodyPlan:
        """The body's jobs, with the request's hold grown by what they hold while queued.

        A batch of many events with large user attributes makes jobs many times its size (each
        event's job keeps the user's part): measured at up to ~100x. Planning refuses (413) jobs
        that would not fit in the whole budget; those that fit wait here for room in it.
        """
        hold = _HOLD.get(None)
        service = self.config.service
        room = self.budget.capacity - (hold.size if hold is not None else 0)
        limits = Limits(service.max_batches_per_request, service.max_batch_bytes, room)
        now_ms = time.time() * 1000
        planned = None
        if self.planner is not None:
            planned = await self.planner.plan(route, raw, connection.name, limits, now_ms)
        if planned is None:
            planned = plan_body(route, raw, connection, limits, now_ms)
        if hold is not None:
            await hold.grow_to(hold.size + planned.job_bytes, service.admission_timeout_s)
        return planned

    async def _check_backlog(self, source: str) -> None:
        now = time.monotonic()
        if now - self._backlog_at > 1.0:
            self._backlog = await self.store.backlog()
            self._backlog_at = now
        if self._backlog >= self.config.service.high_water_mark:
            raise BackpressureError(429 if source == "events_api" else 503)

    def _bulk_limit(self) -> int:
        service = self.config.service
        return service.max_batch_bytes * service.max_batches_per_request + 4096


INGEST = web.AppKey("ingest", Ingest)


class BackpressureError(Exception):
    """The backlog is above its high-water mark: the sender should retry later."""

    def __init__(self, status: int) -> None:
        super().__init__(f"backlog above the high-water mark ({status})")
        self.status = status


def _envelope_type(raw: bytes) -> str | None:
    """The ``type`` of a Firehose message; ``InputError`` when the body is not a JSON object."""
    return decode_checked(_envelope, raw).type


def _request_id(raw: bytes) -> str | None:
    try:
        return _envelope.decode(raw).id
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        return None


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a JSON error naming what to fix; never a 500 for bad input."""
    ingest: Ingest = request.app[INGEST]
    started = time.monotonic()
    # Label by route, never by the raw path: any path a client makes up would be a new series.
    matched = request.match_info.route.resource is not None
    source = (request.path.strip("/").split("/")[0] or "root") if matched else "unmatched"
    forget_connection()
    note = live_in.begin(ingest.live, request)
    try:
        response = await handler(request)
    except ClientGoneError:
        # Nobody is left to answer, and it is not our failure: note it, count it apart.
        log.info("client disconnected before its body was read", extra={"input": source, "remote": request.remote})
        ingest.metrics.client_disconnects.inc()
        return _closing(error_response(400, "CLIENT_GONE", "the client closed the connection"))
    except Exception as error:
        response = _error_answer(error, request)
    if note is not None and ingest.live is not None:
        live_in.record(ingest.live, note, request, response)
    if source in _PROBES or source == _CONSOLE:
        # A 503 from /readyz while starting or stopping is an answer, not a refused ingest request;
        # the console (mounted by ``serve``) answers people, and logs its own refusals.
        return response
    if response.status >= 400:
        ingest.metrics.rejected.labels(source, str(response.status)).inc()
        log_refusal(response, source, request)
    if source in _INGEST_SOURCES:
        ingest.metrics.ingest_latency.labels(source).observe(time.monotonic() - started)
    return response


_INGEST_SOURCES = frozenset({"firehose", "v2", "webhook"})
# Asked by load balancers, orchestrators and Prometheus every few seconds: neither ingest
# latency nor refusals (an ingest 5xx alert would fire on every /readyz 503 at start-up).
_PROBES = frozenset({"healthz", "readyz", "metrics", "openapi.json"})
_CONSOLE = "console"


def _error_answer(error: Exception, request: web.Request) -> web.Response:
    """The JSON error answer for an exception raised while handling ``request``."""
    if isinstance(error, InputError):
        return error_response(400, "BAD_REQUEST", error.message, error.pointer)
    if isinstance(error, AuthError):
        code = "UNAUTHORIZED" if error.status == 401 else "FORBIDDEN"
        return _closing(error_response(error.status, code, error.message))
    if isinstance(error, PayloadTooLargeError):
        return _closing(error_response(413, "PAYLOAD_TOO_LARGE", error.message, error.pointer))
    if isinstance(error, BodyTimeoutError):
        return _closing(error_response(408, "REQUEST_TIMEOUT", str(error)))
    if isinstance(error, UnsupportedEncodingError):
        return _closing(error_response(415, "UNSUPPORTED_MEDIA_TYPE", str(error)))
    if isinstance(error, BackpressureError):
        return _retry_later(error_response(error.status, "BACKLOG_FULL", str(error)))
    if isinstance(error, AdmissionTimeoutError):
        return _retry_later(_closing(error_response(503, "BUSY", str(error))))
    if isinstance(error, StoreUnavailableError):
        return store_unavailable_response(error)  # the watch has logged it once; no line per request
    if isinstance(error, web.HTTPException):
        return error_response(error.status, error.reason.upper().replace(" ", "_"), error.text or error.reason)
    # Not the sender's fault (e.g. the store failing or closing): log it and ask for a retry;
    # mParticle retries 503s, and nothing of the request was committed.
    log.error("ingest failed", exc_info=error, extra={"path": request.path})
    return _retry_later(error_response(503, "UNAVAILABLE", "internal error; nothing was stored, retry later"))


def _closing(response: web.Response) -> web.Response:
    """Close the connection after this answer: what is left of the body is not worth reading."""
    response.force_close()
    return response


def _retry_later(response: web.Response) -> web.Response:
    response.headers["Retry-After"] = "5"
    return response


def create_app(
    config: Config,
    store: AsyncJobStore,
    metrics: Metrics,
    wake: Callable[[str], None],
    live: LiveTraffic | None = None,
    planner: PlanPool | None = None,
) -> web.Application:
    """The ingest application; ``live`` records each batch request for the console's Live stream,
    ``planner`` plans bodies in worker processes."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=1024**3)
    ingest = Ingest(config, store, metrics, wake, live, planner)
    app[INGEST] = ingest
    app.router.add_post("/firehose", ingest.firehose)
    app.router.add_post("/v2/events", ingest.events)
    app.router.add_post("/v2/bulkevents", ingest.bulk_events)
    app.router.add_post("/webhook/{connection}", ingest.webhook)
    metrics.ingest_waiting.set_function(lambda: ingest.budget.waiting)
    metrics.ingest_in_flight.set_function(lambda: ingest.budget.holders)
    metrics.ingest_budget_in_use.set_function(lambda: ingest.budget.in_use)
    # Coroutine handlers (aiohttp deprecates plain functions returning awaitables); no HEAD
    # twins, so that every served route is one the OpenAPI document describes.
    app.router.add_get("/openapi.json", _openapi, allow_head=False)
    app.router.add_get("/metrics", _metrics, allow_head=False)
    app.router.add_get("/healthz", _healthz, allow_head=False)
    app.router.add_get("/readyz", _ready, allow_head=False)
    return app


async def _openapi(_: web.Request) -> web.Response:
    return web.json_response(openapi_document())


async def _healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _metrics(request: web.Request) -> web.Response:
    ingest: Ingest = request.app[INGEST]
    return web.Response(body=ingest.metrics.exposition(), content_type="text/plain", charset="utf-8")


async def _ready(request: web.Request) -> web.Response:
    ingest: Ingest = request.app[INGEST]
    problem = ingest.store.problem()
    if problem is not None:
        return store_not_ready_response(problem)
    if ingest.ready:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "starting or stopping"}, status=503)
