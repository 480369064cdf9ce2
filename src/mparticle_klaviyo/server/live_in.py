"""Ingest's side of the console's Live stream: each batch request and what ingest answered.

The handler notes, by reference, what it read and what it queued (``note_body``,
``note_planned``); the errors middleware, which sees every answer, refusals included, records
one entry per request (``record``). Without a ``LiveTraffic`` (the console off) every step is a
no-op: no note is made, so the hooks cost a context-variable lookup.
"""

from __future__ import annotations

from contextvars import ContextVar

import msgspec
from aiohttp import web

from mparticle_klaviyo.observe.live import NOT_READ, Kept, LiveTraffic
from mparticle_klaviyo.server.errors import ErrorResponse
from mparticle_klaviyo.server.refusals import addressed_connection

# The Live stream's names of the ingest routes (the first path segment is not enough for /v2).
SOURCES = {"/firehose": "firehose", "/v2/events": "events", "/v2/bulkevents": "bulkevents"}
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


class LiveNote:
    """What the request being handled read and queued (set by the middleware, filled by the handler)."""

    __slots__ = ("body", "dropped", "duplicates", "erasure", "events", "first", "limit", "planned", "size", "stored")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.body: bytes | None = None
        self.size = 0
        # The first batch of a bulk body too large to keep whole.
        self.first: bytes | None = None
        self.planned = False
        self.events = 0
        self.stored = 0
        self.duplicates = 0
        self.dropped: dict[str, int] = {}
        self.erasure = False


_NOTE: ContextVar[LiveNote | None] = ContextVar("live_note", default=None)


def begin(live: LiveTraffic | None, request: web.Request) -> LiveNote | None:
    """A fresh note for an ingest request when the Live stream is on (keep-alive requests share a context)."""
    if live is None:
        return None  # nothing ever sets a note then, so there is none to clear either
    note = LiveNote(live.max_body_bytes) if source_of(request) is not None else None
    _NOTE.set(note)
    return note


def source_of(request: web.Request) -> str | None:
    """``firehose``, ``events``, ``bulkevents`` or ``webhook``; None for other routes."""
    if request.path.startswith("/webhook/"):
        return "webhook"
    return SOURCES.get(request.path)


def note_body(raw: bytes) -> None:
    """The body as read: kept by reference when small enough, else its size and its first batch
    (a large body must not outlive its request)."""
    note = _NOTE.get()
    if note is not None:
        note.size = len(raw)
        note.body = raw if len(raw) <= note.limit else None
        if note.body is None:
            note.first = _first_batch(raw, note.limit)


def _first_batch(raw: bytes, limit: int) -> bytes | None:
    """A copy of the first element of a large bulk array; None for anything else or too large.

    Not decoded here (the page decodes, and hides settings that may hold a key, when shown): a
    scan of the array on the ingest path, and a copy so that the body itself can go.
    """
    if raw.lstrip()[:1] != b"[":
        return None
    try:
        parts = _raw_list.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    return bytes(parts[0]) if parts and len(parts[0]) <= limit else None


def note_planned(events: int, stored: int, duplicates: int, dropped: dict[str, int]) -> None:
    """What ingest queued and dropped for the request's batches."""
    note = _NOTE.get()
    if note is not None:
        note.planned = True
        note.events, note.stored, note.duplicates, note.dropped = events, stored, duplicates, dropped


def note_erasure() -> None:
    """The request was a Firehose erasure request, queued as one job."""
    note = _NOTE.get()
    if note is not None:
        note.erasure, note.stored = True, 1


def record(live: LiveTraffic, note: LiveNote, request: web.Request, response: web.StreamResponse) -> None:
    """One Live stream entry for the request: accepted, dropped or refused, with its input."""
    _NOTE.set(None)  # the note holds the body: not past the request (keep-alive shares a context)
    if response.status < 400 and not note.erasure and not note.planned:
        return  # a registration request, not a batch
    body, first_only = _kept_input(live, note)
    outcome, detail = _outcome(note, response)
    live.batch_in(
        connection=addressed_connection(request),
        source=source_of(request) or "",
        events=note.events,
        outcome=outcome,
        detail=detail,
        body=body,
        first_only=first_only,
    )


def _kept_input(live: LiveTraffic, note: LiveNote) -> tuple[Kept, bool]:
    """The body by reference; when it was too large, the first batch alone, re-encoded, if that fits."""
    if note.body is not None:
        return live.keep(note.body), False
    if not note.size:
        return NOT_READ, False
    if note.first is not None:
        first = live.keep(note.first)
        if first.data is not None:
            return first, True
    return Kept(None, note.size), False


def _outcome(note: LiveNote, response: web.StreamResponse) -> tuple[str, str]:
    if response.status >= 400:
        error = response.error if isinstance(response, ErrorResponse) else {}
        where = f" at {error['pointer']}" if error.get("pointer") else ""
        return "refused", f"{response.status} {error.get('code', '')}{where}: {error.get('message', '')}"
    if note.erasure:
        return "accepted", "erasure request: 1 job queued"
    queued = f"{note.stored} job(s) queued" + (f", {note.duplicates} duplicate(s)" if note.duplicates else "")
    if not note.dropped:
        return "accepted", queued
    drops = ", ".join(f"{reason} ({count})" for reason, count in sorted(note.dropped.items()))
    return ("accepted" if note.stored else "dropped"), f"{queued}; dropped {sum(note.dropped.values())}: {drops}"
