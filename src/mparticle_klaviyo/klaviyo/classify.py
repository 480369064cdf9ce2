"""Classify one Klaviyo HTTP outcome: delivered, throttled, retryable or permanent.

Policy: 2xx delivered (``X-Klaviyo-Partial-Failure`` still counts as delivered, but is surfaced);
429 throttled (pause and resend; not an attempt); 408, 5xx except 501/505, timeouts and
connection errors retryable (every event carries a deterministic ``unique_id``, so a resend of a
request Klaviyo did record is harmless); any other status permanent, with Klaviyo's JSON:API
error detail so a dead letter says what to fix.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping

import aiohttp
import msgspec

PARTIAL_FAILURE_HEADER = "X-Klaviyo-Partial-Failure"
# 502 is retried although Klaviyo's Python SDK does not: a proxy's 502 is as transient as a 503.
RETRYABLE_STATUSES = frozenset({408, 500, 502, 503, 504, 524})
# 5xx that describe the request, not the server's health: resending cannot help.
PERMANENT_SERVER_STATUSES = frozenset({501, 505})
MAX_DETAIL_CHARS = 300


class Delivered(msgspec.Struct, frozen=True, kw_only=True):
    """Klaviyo accepted the request (2xx); ``partial_failure`` echoes its partial-failure header."""

    status: int
    partial_failure: str | None = None


class Throttled(msgspec.Struct, frozen=True, kw_only=True):
    """HTTP 429: wait ``retry_after`` seconds (None when absent) and resend; not an attempt."""

    retry_after: float | None = None
    detail: str = ""


class Retryable(msgspec.Struct, frozen=True, kw_only=True):
    """A transient failure (408, 5xx, timeout, reset): resend after backoff."""

    reason: str
    status: int | None = None
    detail: str = ""


class Permanent(msgspec.Struct, frozen=True, kw_only=True):
    """A failure that a resend cannot fix; ``status`` 0 means nothing reached Klaviyo."""

    status: int
    reason: str
    detail: str
    pointer: str | None = None


Outcome = Delivered | Throttled | Retryable | Permanent


class _ErrorSource(msgspec.Struct):
    pointer: str | None = None
    parameter: str | None = None


class _Error(msgspec.Struct):
    code: str = ""
    title: str = ""
    detail: str = ""
    source: _ErrorSource | None = None


class _ErrorBody(msgspec.Struct):
    errors: list[_Error] = msgspec.field(default_factory=list)


def classify_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    retry_after: float | None = None,
) -> Outcome:
    """Classify a response; ``retry_after`` is the already parsed Retry-After header, if any."""
    if 200 <= status < 300:
        return Delivered(status=status, partial_failure=header(headers, PARTIAL_FAILURE_HEADER))
    if status == 429:
        return Throttled(retry_after=retry_after, detail=error_summary(body)[1])
    if status in RETRYABLE_STATUSES or (500 <= status < 600 and status not in PERMANENT_SERVER_STATUSES):
        return Retryable(reason=f"http_{status}", status=status, detail=error_summary(body)[1])
    code, detail, pointer = error_summary(body)
    return Permanent(status=status, reason=code or f"http_{status}", detail=detail, pointer=pointer)


def classify_exception(exc: BaseException) -> Retryable | Permanent:
    """Classify a transport exception: timeouts and connection trouble are retryable."""
    message = str(exc)
    text = trim(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
    if isinstance(exc, TimeoutError):  # asyncio's and aiohttp's timeouts subclass it
        return Retryable(reason="timeout", detail=text)
    if _is_reset(exc):
        return Retryable(reason="connection_reset", detail=text)
    if isinstance(exc, aiohttp.InvalidURL):
        return Permanent(status=0, reason="invalid_url", detail=text)
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | OSError):
        return Retryable(reason="connection_error", detail=text)
    return Permanent(status=0, reason="client_error", detail=text)


def _is_reset(exc: BaseException) -> bool:
    """Whether the peer dropped the connection (RST, or EOF before a full response)."""
    if isinstance(exc, ConnectionResetError | aiohttp.ServerDisconnectedError):
        return True
    return isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE)


def error_summary(body: bytes) -> tuple[str, str, str | None]:
    """Return (first error code, trimmed details with pointers, first pointer) from a body.

    Klaviyo answers errors as JSON:API ``{"errors": [{"code", "detail", "source": {"pointer"}}]}``;
    anything else (an HTML page from a proxy) is summarised as trimmed text.
    """
    try:
        errors = msgspec.json.decode(body, type=_ErrorBody).errors
    except msgspec.DecodeError:
        return "", trim(body.decode("utf-8", errors="replace")), None
    if not errors:
        return "", trim(body.decode("utf-8", errors="replace")), None
    parts = [_describe(error) for error in errors[:3]]
    if len(errors) > 3:
        parts.append(f"and {len(errors) - 3} more")
    first = errors[0]
    pointer = first.source.pointer if first.source else None
    return first.code, trim("; ".join(parts)), pointer


def _describe(error: _Error) -> str:
    text = error.detail or error.title or error.code
    if error.source and error.source.pointer:
        return f"{text} (at {error.source.pointer})"
    if error.source and error.source.parameter:
        return f"{text} (parameter {error.source.parameter})"
    return text


def trim(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """Collapse whitespace and cut ``text`` to ``limit`` characters (ending in an ellipsis)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup that works on plain dicts as well as aiohttp's multidicts."""
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)
