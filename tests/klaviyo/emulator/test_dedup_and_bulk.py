"""Rules 18-19: dedup by (account, profile, metric, unique_id) and the bulk event endpoints."""

from __future__ import annotations

from typing import Any

from .helpers import (
    NOW,
    assert_error,
    bulk_entry,
    bulk_event,
    client,
    client_bulk_body,
    event_body,
    exchange,
    metric,
    one,
    server,
    server_bulk_body,
    with_value,
)

JANE = {"email": "jane@example.com"}
BULK_PTR = "/data/attributes/events-bulk-create/data"


def _without_unique_id(body: dict[str, Any]) -> dict[str, Any]:
    del body["data"]["attributes"]["unique_id"]
    return body


def test_a_repeated_unique_id_is_answered_202_but_recorded_once() -> None:
    responses, state = exchange(client("/client/events", event_body()), client("/client/events", event_body()))
    assert [r.status for r in responses] == [202, 202]
    assert len(state["events"]) == 1
    assert state["duplicates_dropped"] == 1


def test_the_first_of_two_duplicates_wins() -> None:
    first, second = event_body(value=1), event_body(value=2)
    _, state = exchange(client("/client/events", first), client("/client/events", second))
    assert state["events"][0]["value"] == 1


def test_the_same_unique_id_for_another_metric_is_recorded() -> None:
    _, state = exchange(
        client("/client/events", event_body()), client("/client/events", event_body(metric=metric("Refunded")))
    )
    assert len(state["events"]) == 2


def test_the_same_unique_id_for_another_profile_is_recorded() -> None:
    _, state = exchange(
        client("/client/events", event_body()),
        client("/client/events", event_body(profile={"email": "joe@example.com"})),
    )
    assert len(state["events"]) == 2


def test_a_profile_named_by_another_known_identifier_is_the_same_profile_for_dedup() -> None:
    both = {"email": "jane@example.com", "external_id": "mp-1"}
    _, state = exchange(
        client("/client/events", event_body(profile=both)),
        client("/client/events", event_body(profile={"external_id": "mp-1"})),
    )
    assert len(state["events"]) == 1 and state["duplicates_dropped"] == 1


def test_without_unique_id_two_events_in_the_same_second_collapse() -> None:
    first = _without_unique_id(event_body(time="2026-05-01T12:34:56.100Z"))
    second = _without_unique_id(event_body(time="2026-05-01T12:34:56.900Z"))
    _, state = exchange(client("/client/events", first), client("/client/events", second))
    assert len(state["events"]) == 1 and state["duplicates_dropped"] == 1


def test_without_unique_id_events_in_different_seconds_are_both_recorded() -> None:
    first = _without_unique_id(event_body(time="2026-05-01T12:34:56Z"))
    second = _without_unique_id(event_body(time="2026-05-01T12:34:57Z"))
    _, state = exchange(client("/client/events", first), client("/client/events", second))
    assert len(state["events"]) == 2


def test_without_unique_id_or_time_the_receive_second_is_the_dedup_key() -> None:
    body = _without_unique_id(event_body())
    del body["data"]["attributes"]["time"]
    first, second, later = (
        client("/client/events", body),
        client("/client/events", body),
        client("/client/events", body),
    )
    later.at = NOW + 1
    _, state = exchange(first, second, later)
    assert len(state["events"]) == 2 and state["duplicates_dropped"] == 1


def test_client_and_server_calls_of_one_account_share_dedup() -> None:
    _, state = exchange(client("/client/events", event_body()), server("/api/events", event_body()))
    assert len(state["events"]) == 1


def test_a_client_bulk_request_records_every_event() -> None:
    body = client_bulk_body([bulk_event("e1"), bulk_event("e2"), bulk_event("e3", "Ordered Product", value=5)])
    resp, state = one(client("/client/event-bulk-create", body))
    assert resp.status == 202 and resp.body == b""
    assert [e["unique_id"] for e in state["events"]] == ["e1", "e2", "e3"]
    assert {e["profile_id"] for e in state["events"]} == {state["profiles"]["jane@example.com"]["id"]}


def test_a_client_bulk_request_of_1000_events_is_accepted() -> None:
    resp, state = one(client("/client/event-bulk-create", client_bulk_body([bulk_event(f"e{i}") for i in range(1000)])))
    assert resp.status == 202
    assert len(state["events"]) == 1000


def test_a_client_bulk_request_of_1001_events_is_400() -> None:
    body = client_bulk_body([bulk_event(f"e{i}") for i in range(1001)])
    resp, state = one(client("/client/event-bulk-create", body))
    assert_error(resp, 400, pointer="/data/attributes/events/data")
    assert state["events"] == []


def test_a_repeated_unique_id_within_a_bulk_request_fails_it_and_records_nothing() -> None:
    body = client_bulk_body([bulk_event("e1"), bulk_event("e2"), bulk_event("e1")])
    resp, state = one(client("/client/event-bulk-create", body))
    assert_error(resp, 400, pointer="/data/attributes/events/data/2/attributes/unique_id")
    assert state["events"] == [] and state["profiles"] == {}


def test_a_repeated_unique_id_for_another_metric_in_one_bulk_request_is_fine() -> None:
    body = client_bulk_body([bulk_event("e1", "Viewed Product"), bulk_event("e1", "Added to Cart")])
    resp, state = one(client("/client/event-bulk-create", body))
    assert resp.status == 202 and len(state["events"]) == 2


def test_an_invalid_event_deep_in_a_bulk_request_records_nothing() -> None:
    events = [bulk_event("e1"), bulk_event("e2", value_currency="usd")]
    resp, state = one(client("/client/event-bulk-create", client_bulk_body(events)))
    assert_error(resp, 400, pointer="/data/attributes/events/data/1/attributes/value_currency")
    assert state["events"] == []


def test_bulk_events_already_recorded_count_as_duplicates_and_the_rest_are_recorded() -> None:
    _, state = exchange(
        client("/client/event-bulk-create", client_bulk_body([bulk_event("e1")])),
        client("/client/event-bulk-create", client_bulk_body([bulk_event("e1"), bulk_event("e2")])),
    )
    assert [e["unique_id"] for e in state["events"]] == ["e1", "e2"]
    assert state["duplicates_dropped"] == 1


def test_the_bulk_backfill_flag_is_recorded_per_event() -> None:
    body = with_value(client_bulk_body([bulk_event("e1")]), "data/attributes/backfill", True)
    _, state = one(client("/client/event-bulk-create", body))
    assert state["events"][0]["backfill"] is True


def test_a_server_bulk_job_records_events_of_many_profiles() -> None:
    body = server_bulk_body(
        bulk_entry(JANE, [bulk_event("e1"), bulk_event("e2")]),
        bulk_entry({"phone_number": "+15005550006"}, [bulk_event("e1")]),
    )
    resp, state = one(server("/api/event-bulk-create-jobs", body))
    assert resp.status == 202 and resp.body == b""
    assert len(state["events"]) == 3
    assert len(state["profiles"]) == 2


def test_a_server_bulk_job_over_1000_events_in_total_is_400() -> None:
    body = server_bulk_body(
        bulk_entry(JANE, [bulk_event(f"a{i}") for i in range(600)]),
        bulk_entry({"email": "joe@example.com"}, [bulk_event(f"b{i}") for i in range(401)]),
    )
    resp, state = one(server("/api/event-bulk-create-jobs", body))
    assert_error(resp, 400, pointer=BULK_PTR)
    assert state["events"] == []


def test_a_unique_id_repeated_for_one_profile_across_entries_fails_the_job() -> None:
    body = server_bulk_body(bulk_entry(JANE, [bulk_event("e1")]), bulk_entry(JANE, [bulk_event("e1")]))
    resp, state = one(server("/api/event-bulk-create-jobs", body))
    assert_error(resp, 400, pointer=f"{BULK_PTR}/1/attributes/events/data/0/attributes/unique_id")
    assert state["events"] == []


def test_an_error_in_a_server_bulk_job_points_at_the_entry() -> None:
    body = server_bulk_body(bulk_entry(JANE, [bulk_event("e1")]), bulk_entry({"email": "nope"}, [bulk_event("e1")]))
    resp, _ = one(server("/api/event-bulk-create-jobs", body))
    assert_error(resp, 400, pointer=f"{BULK_PTR}/1/attributes/profile/data/attributes/email")


def test_an_invalid_phone_in_a_bulk_entry_with_an_email_is_a_partial_failure() -> None:
    body = server_bulk_body(bulk_entry({"email": "jane@example.com", "phone_number": "12"}, [bulk_event("e1")]))
    resp, state = one(server("/api/event-bulk-create-jobs", body))
    assert resp.status == 202
    assert resp.headers["X-Klaviyo-Partial-Failure"] == "phone_number"
    assert state["events"][0]["profile"] == JANE
