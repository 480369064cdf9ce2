"""The Live stream's rings: bounded by count and by bytes, newest first, filtered, bodies capped."""

from __future__ import annotations

import msgspec

from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.observe.live import DELIVERED, NOT_READ, BatchIn, LiveTraffic, RequestOut, Verdict, trimmed


def _batch(live: LiveTraffic, connection: str = "acme", body: bytes = b'{"events": []}') -> None:
    live.batch_in(
        connection=connection, source="events", events=1, outcome="accepted", detail="1 job(s) queued",
        body=live.keep(body),
    )  # fmt: skip


def _bulk_request(events: int) -> KlaviyoRequest:
    data = [{"type": "event", "attributes": {"n": n}} for n in range(events)]
    body = {"data": {"type": "event-bulk-create-job", "attributes": {"events-bulk-create": {"data": data}}}}
    keys = tuple(f"k{n}" for n in range(events))
    return KlaviyoRequest(
        path="/api/event-bulk-create-jobs", auth="private", kind="event_bulk", body=body, event_keys=keys
    )


def test_a_ring_keeps_only_the_newest_entries_of_its_kind() -> None:
    live = LiveTraffic(max_entries=5)
    for _ in range(12):
        _batch(live)
    entries = live.entries()
    assert len(entries) == 5
    assert [e.id for e in entries] == [12, 11, 10, 9, 8]


def test_a_ring_drops_the_oldest_once_its_bodies_pass_the_byte_budget() -> None:
    live = LiveTraffic(max_entries=100, max_body_bytes=1000, max_ring_bytes=3000)
    for _ in range(10):
        _batch(live, body=b"x" * 1000)
    assert len(live.batches) == 3
    assert live.batches.bytes == 3000


def test_a_body_over_the_cap_is_kept_as_its_size_only() -> None:
    live = LiveTraffic(max_body_bytes=100)
    _batch(live, body=b"y" * 101)
    entry = live.entries()[0]
    assert isinstance(entry, BatchIn)
    assert entry.body.data is None and entry.body.size == 101
    assert live.batches.bytes == 0


def test_a_small_body_is_kept_by_reference_not_copied() -> None:
    live = LiveTraffic()
    body = b'{"events": [1, 2, 3]}'
    _batch(live, body=body)
    entry = live.entries()[0]
    assert isinstance(entry, BatchIn) and entry.body.data is body


def test_a_bulk_request_is_kept_trimmed_to_its_first_items_with_its_counts() -> None:
    live = LiveTraffic()
    inputs = [(n, "event", b"payload %d" % n) for n in range(1000)]
    live.request_out(
        connection="acme", requests=[_bulk_request(1000)], inputs=inputs, jobs=1000, profiles=400, verdict=DELIVERED
    )
    entry = live.entries()[0]
    assert isinstance(entry, RequestOut)
    assert (entry.jobs, entry.events, entry.profiles) == (1000, 1000, 400)
    assert [i.job_id for i in entry.inputs] == [0, 1, 2]
    endpoint, body = entry.requests[0]
    assert endpoint == "POST /api/event-bulk-create-jobs"
    assert body.data is not None and len(body.data) < 1000
    data = msgspec.json.decode(body.data)["data"]["attributes"]["events-bulk-create"]["data"]
    assert data[-1] == "... 997 more" and len(data) == 4


def test_entries_are_filtered_by_kind_and_connection_newest_first() -> None:
    live = LiveTraffic()
    _batch(live, "acme")
    _batch(live, "beta")
    retried = Verdict("retried", "http_503", 503, 1.0e9)
    live.request_out(connection="acme", requests=[], inputs=[], jobs=1, profiles=1, verdict=retried)
    assert [e.id for e in live.entries(connection="acme")] == [3, 1]
    assert [e.kind for e in live.entries("out")] == ["out"]
    assert [e.connection for e in live.entries("in")] == ["beta", "acme"]
    assert live.find(2) is not None and live.find(99) is None


def test_a_body_never_read_is_noted_as_such() -> None:
    live = LiveTraffic()
    assert live.keep(None) is NOT_READ


def test_trimming_touches_only_long_lists() -> None:
    assert trimmed({"a": [1, 2], "b": {"c": list(range(5))}}, items=2) == {
        "a": [1, 2],
        "b": {"c": [0, 1, "... 3 more"]},
    }
