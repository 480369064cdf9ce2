"""Recent traffic for the console's Live stream: batches in and requests out, with their outcomes.

Two rings, one per kind, each bounded twice: at most ``MAX_ENTRIES`` entries and at most
``MAX_RING_BYTES`` of kept bodies; the newest entry pushes the oldest out. Every kept body is at
most ``MAX_BODY_BYTES``, a larger one is noted by its size only.

Recording runs on ingest's and delivery's hot paths, so it stays cheap: an ingest body is kept
by reference (it exists anyway), a job's stored input likewise, and a Klaviyo request body is
trimmed (long lists to their first items) and encoded once. Plain values only: this module knows
no HTTP, store or delivery. ``serve`` makes one only when its console is on; otherwise the hooks
hold ``None`` and nothing is recorded.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec

from mparticle_klaviyo.klaviyo.request import KlaviyoRequest

MAX_ENTRIES = 200
MAX_BODY_BYTES = 32 * 1024
MAX_RING_BYTES = 4 * 1024 * 1024
# A request's long lists (a bulk job's 1000 events) and its jobs' inputs are kept to this many.
SHOWN_ITEMS = 3
IN = "in"
OUT = "out"

_json = msgspec.json.Encoder()


class Verdict(NamedTuple):
    """What became of a request's jobs: ``delivered``, ``retried``, ``dead-lettered`` or ``dropped``."""

    outcome: str
    reason: str = ""
    status: int | None = None
    due: float | None = None  # Unix time a retried job is due again
    note: str = ""


DELIVERED = Verdict("delivered")


class Kept(msgspec.Struct, frozen=True):
    """A body as kept: its bytes, or ``None`` when it was too large (or never read); its size."""

    data: bytes | None
    size: int


NOT_READ = Kept(None, 0)


class BatchIn(msgspec.Struct, frozen=True):
    """A request to an ingest endpoint and what ingest answered."""

    id: int
    at: float
    connection: str | None
    source: str  # firehose, events, bulkevents, webhook
    events: int
    outcome: str  # accepted, dropped, refused
    detail: str
    body: Kept
    first_only: bool = False  # the body is the request's first batch, re-encoded (the whole was too large)

    @property
    def kind(self) -> str:
        """``in``."""
        return IN


class JobInput(msgspec.Struct, frozen=True):
    """One job a request carried: its id, kind and stored input (``jobs.plan``'s payload bytes)."""

    job_id: int
    job_kind: str
    payload: Kept


class RequestOut(msgspec.Struct, frozen=True, kw_only=True):
    """A send unit's requests to Klaviyo, the jobs they carried, and the verdict on those jobs."""

    id: int
    at: float
    connection: str
    endpoint: str
    jobs: int
    events: int
    profiles: int
    verdict: Verdict
    requests: tuple[tuple[str, Kept], ...]  # endpoint and trimmed JSON body of each request sent
    inputs: tuple[JobInput, ...]  # the first ``SHOWN_ITEMS`` jobs' inputs

    @property
    def kind(self) -> str:
        """``out``."""
        return OUT


Entry = BatchIn | RequestOut
E = TypeVar("E", BatchIn, RequestOut)


class Ring(Generic[E]):
    """The newest entries of one kind, within a count and a byte budget."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._entries: deque[tuple[E, int]] = deque()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self.bytes = 0

    def add(self, entry: E, size: int) -> None:
        """Keep ``entry`` (holding ``size`` bytes of bodies); drop the oldest beyond the budgets."""
        self._entries.append((entry, size))
        self.bytes += size
        while len(self._entries) > self._max_entries or (self.bytes > self._max_bytes and len(self._entries) > 1):
            _, dropped = self._entries.popleft()
            self.bytes -= dropped

    def __len__(self) -> int:
        return len(self._entries)

    def newest_first(self) -> Iterator[E]:
        """The entries, newest first."""
        return (entry for entry, _ in reversed(self._entries))


class LiveTraffic:
    """The two rings, and the cheap recorders ingest and delivery call."""

    def __init__(
        self,
        max_entries: int = MAX_ENTRIES,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_ring_bytes: int = MAX_RING_BYTES,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.batches: Ring[BatchIn] = Ring(max_entries, max_ring_bytes)
        self.requests: Ring[RequestOut] = Ring(max_entries, max_ring_bytes)
        self._ids = itertools.count(1)

    def keep(self, data: bytes | None) -> Kept:
        """``data`` by reference when it fits the per-body cap; else only its size."""
        if data is None:
            return NOT_READ
        return Kept(data if len(data) <= self.max_body_bytes else None, len(data))

    def batch_in(
        self,
        *,
        connection: str | None,
        source: str,
        events: int,
        outcome: str,
        detail: str,
        body: Kept,
        first_only: bool = False,
    ) -> None:
        """Record an ingest request's outcome."""
        entry = BatchIn(next(self._ids), time.time(), connection, source, events, outcome, detail, body, first_only)
        self.batches.add(entry, _held(body))

    def request_out(
        self,
        *,
        connection: str,
        requests: Sequence[KlaviyoRequest],
        inputs: Sequence[tuple[int, str, bytes]],
        jobs: int,
        profiles: int,
        verdict: Verdict,
    ) -> None:
        """Record a send unit: the requests that went (or none, for a dropped job) and its verdict."""
        kept = tuple((request.endpoint, self.keep(_json.encode(_shown_body(request)))) for request in requests)
        shown = tuple(JobInput(i, kind, self.keep(payload)) for i, kind, payload in inputs[:SHOWN_ITEMS])
        entry = RequestOut(
            id=next(self._ids),
            at=time.time(),
            connection=connection,
            endpoint=requests[0].endpoint if requests else "",
            jobs=jobs,
            events=sum(len(request.event_keys) for request in requests),
            profiles=profiles,
            verdict=verdict,
            requests=kept,
            inputs=shown,
        )
        self.requests.add(entry, sum(_held(body) for _, body in kept) + sum(_held(i.payload) for i in shown))

    def entries(self, kind: str | None = None, connection: str | None = None) -> list[Entry]:
        """The kept entries, newest first; of one kind (``in``/``out``) and one connection when given."""
        rings: list[Iterator[Entry]] = []
        if kind in (None, IN):
            rings.append(self.batches.newest_first())
        if kind in (None, OUT):
            rings.append(self.requests.newest_first())
        found = [e for ring in rings for e in ring if connection is None or e.connection == connection]
        return sorted(found, key=lambda e: e.id, reverse=True)

    def find(self, entry_id: int) -> Entry | None:
        """The kept entry with this id, if it is still kept."""
        return next((e for e in self.entries() if e.id == entry_id), None)


def _held(body: Kept) -> int:
    return 0 if body.data is None else len(body.data)


def _shown_body(request: KlaviyoRequest) -> Any:
    """The body to keep: only bulk requests have long lists, so only theirs are walked (a client
    request's body is encoded as it is, at a fraction of the walk's cost)."""
    return trimmed(request.body) if "bulk" in request.kind else request.body


def trimmed(document: Any, items: int = SHOWN_ITEMS) -> Any:
    """``document`` with every list cut to its first ``items`` (and a note of how many were left out).

    The walk touches only what it keeps, so a 1000-event bulk body costs as much as three events.
    """
    if isinstance(document, dict):
        return {key: trimmed(value, items) for key, value in document.items()}
    if isinstance(document, list):
        kept = [trimmed(value, items) for value in document[:items]]
        if len(document) > items:
            kept.append(f"... {len(document) - items} more")
        return kept
    return document
