"""HTTP ingest: Firehose, Events API and Webhook inputs -> durable jobs, answered after commit.

Every request runs the same steps: authenticate -> size limit -> decode (400 naming the field)
-> map once (what can never be sent is dropped and counted) -> backlog check (429/503 above
the high-water mark) -> one durable transaction -> 202. Nothing of a rejected request is stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from mparticle_klaviyo.config import Config, Connection
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.json_errors import decode_checked
from mparticle_klaviyo.mparticle.decode import decode_document, decode_firehose
from mparticle_klaviyo.mparticle.firehose import EVENT_PROCESSING_REQUEST, MODULE_REGISTRATION_REQUEST, Envelope
from mparticle_klaviyo.mparticle.model import UserBatch
from mparticle_klaviyo.mparticle.registration import FIREHOSE_VERSION, registration_response
from mparticle_klaviyo.service.auth import AuthError, events_api_connection, firehose_connection, webhook_connection
from mparticle_klaviyo.service.bodies import read_limited, split_bulk
from mparticle_klaviyo.service.errors import PayloadTooLargeError, error_response
from mparticle_klaviyo.service.jobs import plan_jobs
from mparticle_klaviyo.service.metrics import Metrics
from mparticle_klaviyo.service.openapi import openapi_document
from mparticle_klaviyo.store.aio import AsyncStore

log = logging.getLogger("mparticle_klaviyo.ingest")
_envelope = msgspec.json.Decoder(Envelope)
_UNSUPPORTED_FIREHOSE = {
    "audience_subscription_request": "audiences are not supported: this is an event integration",
    "audience_membership_change_request": "audiences are not supported: this is an event integration",
    "dsr_processing_request": "data subject requests are not supported: delete the profile in Klaviyo",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Ingest:
    """The ingest endpoints' shared state: configuration, store, metrics, backlog cache."""

    def __init__(self, config: Config, store: AsyncStore, metrics: Metrics, wake: Callable[[str], None]) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self.wake = wake
        self.ready = False
        self._backlog = 0
        self._backlog_at = 0.0
        self._slots = asyncio.Semaphore(config.service.max_concurrent_requests)

    def limited(self, handler: Handler) -> Handler:
        """``handler`` for at most ``max_concurrent_requests`` requests at once; the others wait.

        A waiting request's body stays unread (aiohttp buffers at most ~128 KiB of it, then TCP
        pushes back on the sender), so memory is bounded by the slots, not by how many senders
        arrive at once: a burst of 12.8 MB bulk requests could otherwise exhaust it.
        """

        async def run(request: web.Request) -> web.StreamResponse:
            self.metrics.ingest_waiting.inc()
            try:
                await self._slots.acquire()
            finally:
                self.metrics.ingest_waiting.dec()
            self.metrics.ingest_in_flight.inc()
            try:
                return await handler(request)
            finally:
                self.metrics.ingest_in_flight.dec()
                self._slots.release()

        return run

    async def firehose(self, request: web.Request) -> web.StreamResponse:
        """``POST /firehose``: registration (no auth), event processing (Token auth)."""
        raw = await read_limited(request, self._bulk_limit())
        kind = _envelope_type(raw)
        if kind == MODULE_REGISTRATION_REQUEST:
            return web.json_response(registration_response(_request_id(raw)))
        if kind in _UNSUPPORTED_FIREHOSE:
            return error_response(400, "UNSUPPORTED", _UNSUPPORTED_FIREHOSE[kind or ""], "/type")
        if kind is None:
            raise InputError("/type", "required field is missing")
        if kind != EVENT_PROCESSING_REQUEST:
            return error_response(400, "BAD_REQUEST", f"unknown Firehose message type {kind!r}", "/type")
        connection = firehose_connection(request.headers.get("Authorization"), self.config.connections)
        batch = _decoded(decode_firehose, raw)
        await self._accept([batch], connection, "firehose")
        return web.json_response(
            {
                "type": "event_processing_response",
                "id": batch.batch_key or "",
                "timestamp_ms": int(time.time() * 1000),
                "firehose_version": FIREHOSE_VERSION,
            }
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        """``POST /v2/events``: one batch, HTTP Basic auth."""
        connection = events_api_connection(request.headers.get("Authorization"), self.config.connections)
        raw = await read_limited(request, self.config.service.max_batch_bytes)
        batches = _decoded(decode_document, raw)
        if len(batches) != 1 or raw.lstrip()[:1] != b"{":
            raise InputError("", "expected one batch object (send arrays to /v2/bulkevents)")
        _no_firehose(batches[0])
        await self._accept(batches, connection, "events_api")
        return web.Response(status=202)

    async def bulk_events(self, request: web.Request) -> web.StreamResponse:
        """``POST /v2/bulkevents``: an array of up to 100 batches of up to 128 KB each."""
        connection = events_api_connection(request.headers.get("Authorization"), self.config.connections)
        raw = await read_limited(request, self._bulk_limit())
        parts = split_bulk(raw, self.config.service.max_batches_per_request, self.config.service.max_batch_bytes)
        batches = [_bulk_batch(part, f"/{n}") for n, part in enumerate(parts)]
        await self._accept(batches, connection, "events_api")
        return web.Response(status=202)

    async def webhook(self, request: web.Request) -> web.StreamResponse:
        """``POST /webhook/{connection}``: mParticle's Webhook output (one batch or an array)."""
        name = request.match_info["connection"]
        connection = webhook_connection(name, request.headers.get("Authorization"), self.config.connections)
        raw = await read_limited(request, self._bulk_limit())
        batches = _decoded(decode_document, raw)
        _no_firehose(*batches)
        await self._accept(batches, connection, "webhook")
        return web.Response(status=202)

    async def _accept(self, batches: list[UserBatch], connection: Connection, source: str) -> None:
        """Map, check the backlog, commit; raises ``BackpressureError`` or ``InputError``."""
        planned = plan_jobs(batches, connection, time.time() * 1000)
        if planned.jobs:
            await self._check_backlog(source)
            result = await self.store.enqueue(planned.jobs, time.time())
            self.metrics.accepted.labels(connection.name).inc(result.stored)
            self.metrics.duplicates.labels(connection.name).inc(result.duplicates)
            self._backlog += result.stored
            self.wake(connection.name)
        # Counted once the request is accepted: a refused one is sent again, and would count twice.
        self.metrics.received.labels(connection.name, source).inc(planned.events)
        for reason, count in planned.dropped.items():
            self.metrics.dropped.labels(connection.name, reason).inc(count)

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


def _decoded(decode: Callable[[bytes], Any], raw: bytes, prefix: str = "") -> Any:
    try:
        return decode(raw)
    except InputError as error:
        raise InputError(prefix + error.pointer, error.message) from None


def _bulk_batch(part: bytes, pointer: str) -> UserBatch:
    """One element of a bulk array: a batch object, never an array or a Firehose message."""
    if part[:1] != b"{":
        raise InputError(pointer, "expected a batch object")
    batch: UserBatch = _decoded(decode_document, part, pointer)[0]
    _no_firehose(batch, pointer=pointer)
    return batch


def _no_firehose(*batches: UserBatch, pointer: str = "") -> None:
    """Batch inputs take batches: a Firehose message there was sent to the wrong endpoint."""
    if any(b.source == "firehose" for b in batches):
        raise InputError(pointer + "/type", "Firehose messages go to /firehose")


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
    try:
        response = await handler(request)
    except InputError as error:
        response = error_response(400, "BAD_REQUEST", error.message, error.pointer)
    except AuthError as error:
        response = error_response(error.status, "UNAUTHORIZED" if error.status == 401 else "FORBIDDEN", error.message)
    except PayloadTooLargeError as error:
        response = error_response(413, "PAYLOAD_TOO_LARGE", error.message, error.pointer)
    except BackpressureError as error:
        response = error_response(error.status, "BACKLOG_FULL", str(error))
        response.headers["Retry-After"] = "5"
    except web.HTTPException as error:
        response = error_response(error.status, error.reason.upper().replace(" ", "_"), error.text or error.reason)
    except Exception:
        # Not the sender's fault (e.g. the store failing or closing): log it and ask for a retry;
        # mParticle retries 503s, and nothing of the request was committed.
        log.exception("ingest failed", extra={"path": request.path})
        response = error_response(503, "UNAVAILABLE", "internal error; nothing was stored, retry later")
        response.headers["Retry-After"] = "5"
    if response.status >= 400:
        ingest.metrics.rejected.labels(source, str(response.status)).inc()
    ingest.metrics.ingest_latency.labels(source).observe(time.monotonic() - started)
    return response


def create_app(config: Config, store: AsyncStore, metrics: Metrics, wake: Callable[[str], None]) -> web.Application:
    """The ingest application."""
    app = web.Application(middlewares=[errors_middleware], client_max_size=1024**3)
    ingest = Ingest(config, store, metrics, wake)
    app[INGEST] = ingest
    app.router.add_post("/firehose", ingest.limited(ingest.firehose))
    app.router.add_post("/v2/events", ingest.limited(ingest.events))
    app.router.add_post("/v2/bulkevents", ingest.limited(ingest.bulk_events))
    app.router.add_post("/webhook/{connection}", ingest.limited(ingest.webhook))
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
    if ingest.ready:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "starting or stopping"}, status=503)
