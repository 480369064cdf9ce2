"""One log line per refused ingest request: status, code, pointer, input, connection, sender.

Never the body, nor any header: the connection is named only once its credentials proved it
(or, for a webhook, by the path the request was sent to), never guessed from a wrong token.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

from aiohttp import web

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.server.errors import ErrorResponse

log = logging.getLogger("mparticle_klaviyo.ingest")
# The connection the request being handled authenticated as.
_CONNECTION: ContextVar[str | None] = ContextVar("ingest_connection", default=None)


def forget_connection() -> None:
    """Start a request knowing no connection (requests of one keep-alive connection may share a context)."""
    _CONNECTION.set(None)


def authenticated(connection: Connection) -> Connection:
    """Note which connection the request being handled authenticated as; return it."""
    _CONNECTION.set(connection.name)
    return connection


def addressed_connection(request: web.Request) -> str | None:
    """The connection ``request`` authenticated as, else the one its path names (a webhook's); else None."""
    return _CONNECTION.get() or request.match_info.get("connection")


def log_refusal(response: web.StreamResponse, source: str, request: web.Request) -> None:
    """One info line for a refused request."""
    error = response.error if isinstance(response, ErrorResponse) else {}
    log.info(
        "ingest request refused",
        extra={
            "status": response.status,
            "code": error.get("code"),
            "pointer": error.get("pointer"),
            "input": source,
            "connection": addressed_connection(request),
            "remote": request.remote,
        },
    )
