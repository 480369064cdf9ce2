"""Error answers of the ingest API: mParticle's Events API error shape plus a JSON pointer."""

from __future__ import annotations

import msgspec
from aiohttp import web

from mparticle_klaviyo.store.watch import StoreProblem
from mparticle_klaviyo.store.watch import StoreUnavailableError as StoreUnavailableError  # raised by AsyncStore

# How long senders wait before retrying while the store has a problem (the watch holds a failed
# write for 5 s; a deleted store waits for an operator, and mParticle retries with backoff anyway).
STORE_RETRY_AFTER_S = 5


_json = msgspec.json.Encoder()


class PayloadTooLargeError(Exception):
    """A body, batch or bulk array over the configured limits (HTTP 413)."""

    def __init__(self, message: str, pointer: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.pointer = pointer


class BodyTimeoutError(Exception):
    """The body did not arrive within the read deadlines (HTTP 408; the connection is closed)."""


class UnsupportedEncodingError(Exception):
    """A ``Content-Encoding`` we do not inflate (HTTP 415)."""


class ClientGoneError(Exception):
    """The client closed the connection before its body was read: nobody is there to answer."""


class AdmissionTimeoutError(Exception):
    """The ingest memory budget stayed full too long for this request (HTTP 503 + Retry-After)."""


class ErrorResponse(web.Response):
    """A JSON error answer that also keeps its error object (for the refusal's log line)."""

    error: dict[str, str]


def error_response(status: int, code: str, message: str, pointer: str | None = None) -> web.Response:
    """``{"errors": [{"code", "message", "pointer"}]}`` with ``status``."""
    error: dict[str, str] = {"code": code, "message": message}
    if pointer is not None:
        error["pointer"] = pointer
    response = ErrorResponse(
        body=_json.encode({"errors": [error]}), status=status, content_type="application/json", charset="utf-8"
    )
    response.error = error  # so the log line need not parse the body back
    return response


def store_unavailable_response(error: StoreUnavailableError) -> web.Response:
    """503 ``STORE_UNAVAILABLE`` with ``Retry-After``: the store has a problem, nothing was acknowledged."""
    response = error_response(503, "STORE_UNAVAILABLE", str(error))
    response.headers["Retry-After"] = str(STORE_RETRY_AFTER_S)
    return response


def store_not_ready_response(problem: StoreProblem) -> web.Response:
    """``/readyz``'s 503 naming the store's problem and whether only a restart clears it."""
    return web.json_response({"status": "store unavailable", **msgspec.to_builtins(problem)}, status=503)
