"""Mapped events and subscriptions -> Klaviyo JSON:API requests in client or server mode."""

from __future__ import annotations

from typing import Any

import msgspec

from mparticle_klaviyo.delivery.payloads import (
    BULK_EVENTS,
    BULK_SUBSCRIPTIONS,
    CLIENT_EVENTS,
    CLIENT_SUBSCRIPTIONS,
    BulkEventBuilder,
    client_event_request,
    subscription_request,
)
from mparticle_klaviyo.klaviyo.limits import MAX_BODY_BYTES, MAX_BULK_EVENTS
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.mapping.result import MappedEvent, Subscription

JANE = {"email": "jane@example.com", "first_name": "Jane"}
SAM = {"phone_number": "+15555550100"}


def event(uid: str, name: str = "Viewed", profile: dict[str, Any] | None = None, **properties: Any) -> MappedEvent:
    attributes = {
        "properties": properties,
        "metric": {"data": {"type": "metric", "attributes": {"name": name}}},
        "unique_id": uid,
        "time": "2023-11-14T22:13:20.000+00:00",
    }
    return MappedEvent(unique_id=uid, attributes=attributes, profile=JANE if profile is None else profile, index=0)


def bulk(events: list[MappedEvent], builder: BulkEventBuilder | None = None) -> list[KlaviyoRequest]:
    builder = builder or BulkEventBuilder()
    requests: list[KlaviyoRequest] = []
    for item in events:
        requests.extend(builder.add(item))
    requests.extend(builder.flush())
    return requests


def entries(request: KlaviyoRequest) -> list[dict[str, Any]]:
    found = request.body["data"]["attributes"]["events-bulk-create"]["data"]
    assert isinstance(found, list)
    return found


def uids(entry: dict[str, Any]) -> list[str]:
    return [e["attributes"]["unique_id"] for e in entry["attributes"]["events"]["data"]]


def test_a_client_event_is_one_public_post_to_client_events() -> None:
    request = client_event_request(event("u1", k="v"))
    assert (request.method, request.path, request.auth, request.kind, request.event_keys) == (
        "POST",
        CLIENT_EVENTS,
        "public",
        "event",
        ("u1",),
    )
    assert request.endpoint == "POST /client/events"
    assert request.body == {
        "data": {
            "type": "event",
            "attributes": {
                "properties": {"k": "v"},
                "metric": {"data": {"type": "metric", "attributes": {"name": "Viewed"}}},
                "unique_id": "u1",
                "time": "2023-11-14T22:13:20.000+00:00",
                "profile": {"data": {"type": "profile", "attributes": JANE}},
            },
        }
    }


def test_a_request_never_carries_a_key_in_its_path() -> None:
    assert "?" not in client_event_request(event("u1")).path
    assert "?" not in subscription_request(Subscription(channels=("email",), email="a@b.co"), "L", False).path


def test_a_client_subscription_names_the_channels_and_the_list() -> None:
    subscription = Subscription(channels=("email", "sms"), email="jane@example.com", phone_number="+15555550100")
    request = subscription_request(subscription, "Y6nRLr", server_mode=False)
    assert (request.path, request.auth, request.kind) == (CLIENT_SUBSCRIPTIONS, "public", "subscription")
    assert request.body == {
        "data": {
            "type": "subscription",
            "attributes": {
                "custom_source": "mParticle",
                "profile": {
                    "data": {
                        "type": "profile",
                        "attributes": {
                            "email": "jane@example.com",
                            "phone_number": "+15555550100",
                            "subscriptions": {
                                "email": {"marketing": {"consent": "SUBSCRIBED"}},
                                "sms": {"marketing": {"consent": "SUBSCRIBED"}},
                            },
                        },
                    }
                },
            },
            "relationships": {"list": {"data": {"type": "list", "id": "Y6nRLr"}}},
        }
    }


def test_a_push_subscription_for_a_phone_only_profile_has_no_email() -> None:
    request = subscription_request(Subscription(channels=("push",), phone_number="+15555550100"), "L", False)
    assert request.body["data"]["attributes"]["profile"]["data"]["attributes"] == {
        "phone_number": "+15555550100",
        "subscriptions": {"push": {"marketing": {"consent": "SUBSCRIBED"}}},
    }


def test_a_server_subscription_is_a_private_bulk_job() -> None:
    request = subscription_request(Subscription(channels=("email",), email="jane@example.com"), "Y6nRLr", True)
    assert (request.path, request.auth, request.kind) == (BULK_SUBSCRIPTIONS, "private", "subscription_bulk")
    assert request.body == {
        "data": {
            "type": "profile-subscription-bulk-create-job",
            "attributes": {
                "custom_source": "mParticle",
                "profiles": {
                    "data": [
                        {
                            "type": "profile",
                            "attributes": {
                                "email": "jane@example.com",
                                "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}},
                            },
                        }
                    ]
                },
            },
            "relationships": {"list": {"data": {"type": "list", "id": "Y6nRLr"}}},
        }
    }


def test_a_server_subscription_without_a_list_has_no_relationships() -> None:
    request = subscription_request(Subscription(channels=("email",), email="jane@example.com"), None, True)
    assert "relationships" not in request.body["data"]


def test_a_bulk_job_groups_events_per_profile_in_order() -> None:
    [request] = bulk([event("a1"), event("s1", profile=SAM), event("a2"), event("s2", profile=SAM)])
    assert (request.path, request.auth, request.kind) == (BULK_EVENTS, "private", "event_bulk")
    assert request.event_keys == ("a1", "s1", "a2", "s2")
    found = entries(request)
    assert [e["attributes"]["profile"] for e in found] == [
        {"data": {"type": "profile", "attributes": JANE}},
        {"data": {"type": "profile", "attributes": SAM}},
    ]
    assert [uids(e) for e in found] == [["a1", "a2"], ["s1", "s2"]]
    assert request.body["data"]["type"] == "event-bulk-create-job"
    assert {e["type"] for e in found} == {"event-bulk-create"}


def test_a_bulk_job_event_has_no_profile_of_its_own() -> None:
    [request] = bulk([event("a1", k="v")])
    [item] = entries(request)[0]["attributes"]["events"]["data"]
    assert item == {"type": "event", "attributes": event("a1", k="v").attributes}
    assert "profile" not in item["attributes"]


def test_a_bulk_job_holds_at_most_1000_events() -> None:
    requests = bulk([event(f"u{n}") for n in range(2 * MAX_BULK_EVENTS + 500)])
    assert [len(r.event_keys) for r in requests] == [1000, 1000, 500]
    assert [sum(len(uids(e)) for e in entries(r)) for r in requests] == [1000, 1000, 500]
    assert requests[1].event_keys[0] == "u1000"


def test_a_repeated_event_for_the_same_profile_and_metric_is_left_out_of_the_job() -> None:
    builder = BulkEventBuilder()
    [request] = bulk([event("u1"), event("u1"), event("u2")], builder)
    assert request.event_keys == ("u1", "u2")
    assert [uids(e) for e in entries(request)] == [["u1", "u2"]]
    assert builder.duplicates == 1


def test_a_unique_id_is_never_twice_in_one_job_even_for_another_metric_or_profile() -> None:
    # Klaviyo keys its dedup by profile, which it may resolve across identifiers we cannot see.
    requests = bulk([event("u1"), event("u1", name="Other"), event("u1", profile=SAM), event("u2")])
    assert [r.event_keys for r in requests] == [("u1",), ("u1",), ("u1", "u2")]


def test_events_of_one_person_share_one_entry_whatever_their_profile_attributes() -> None:
    earlier = {"email": "jane@example.com", "first_name": "Jane", "properties": {"plan": "free", "age": 30}}
    later = {"email": "jane@example.com", "first_name": "Janet", "properties": {"plan": "pro"}}
    [request] = bulk([event("a1", profile=earlier), event("s1", profile=SAM), event("a2", profile=later)])
    assert [uids(e) for e in entries(request)] == [["a1", "a2"], ["s1"]]
    assert entries(request)[0]["attributes"]["profile"]["data"]["attributes"] == {
        "email": "jane@example.com",
        "first_name": "Janet",
        "properties": {"plan": "pro", "age": 30},
    }
    assert earlier["first_name"] == "Jane", "an event's own profile is never changed"


def test_a_repeat_with_a_changed_profile_updates_the_entry_but_is_not_sent_twice() -> None:
    builder = BulkEventBuilder()
    renamed = {**JANE, "first_name": "Janet"}
    [request] = bulk([event("u1"), event("u1", profile=renamed)], builder)
    assert request.event_keys == ("u1",)
    assert entries(request)[0]["attributes"]["profile"]["data"]["attributes"] == renamed
    assert builder.duplicates == 1


def test_a_profile_is_known_by_its_email_then_its_phone_then_its_external_id() -> None:
    with_phone = {**JANE, "phone_number": "+15555550199"}
    by_id = {"external_id": "X1", "first_name": "X"}
    events = [event("a1"), event("a2", profile=with_phone), event("s1", profile=SAM), event("x1", profile=by_id)]
    [request] = bulk([*events, event("x2", profile={"external_id": "X1"})])
    assert [uids(e) for e in entries(request)] == [["a1", "a2"], ["s1"], ["x1", "x2"]]
    assert entries(request)[0]["attributes"]["profile"]["data"]["attributes"]["phone_number"] == "+15555550199"


def test_fits_counts_a_repeat_as_nothing_and_a_reused_unique_id_as_a_cut() -> None:
    builder = BulkEventBuilder(max_events=2)
    list(builder.add(event("u1")))
    assert builder.fits([event("u1"), event("u2")])
    assert not builder.fits([event("u1", name="Other")])
    assert not builder.fits([event("u2"), event("u2", name="Other")])
    assert not builder.fits([event("u2"), event("u3")])
    for item in [event("u1"), event("u2")]:
        assert list(builder.add(item)) == []


def test_a_repeat_after_a_flush_starts_the_next_job() -> None:
    builder = BulkEventBuilder(max_events=2)
    requests = bulk([event("u1"), event("u2"), event("u3"), event("u1")], builder)
    assert [r.event_keys for r in requests] == [("u1", "u2"), ("u3", "u1")]


def test_a_job_is_cut_before_it_passes_the_byte_limit() -> None:
    events = [event(f"u{n}", big="x" * 90_000) for n in range(70)]
    requests = bulk(events)
    assert len(requests) == 2
    assert sum(len(r.event_keys) for r in requests) == 70
    assert all(len(msgspec.json.encode(r.body)) <= MAX_BODY_BYTES for r in requests)


def test_a_small_byte_limit_cuts_jobs_sooner() -> None:
    requests = bulk([event(f"u{n}", text="y" * 500) for n in range(10)], BulkEventBuilder(max_bytes=4096 + 2500))
    assert len(requests) > 2
    assert [k for r in requests for k in r.event_keys] == [f"u{n}" for n in range(10)]


def test_flushing_an_empty_builder_yields_nothing() -> None:
    assert list(BulkEventBuilder().flush()) == []


def test_a_client_subscription_carries_the_external_id() -> None:
    subscription = Subscription(channels=("email",), email="jane@example.com", external_id="cust-42")
    client = subscription_request(subscription, "L", False).body["data"]["attributes"]["profile"]["data"]
    assert client["attributes"]["external_id"] == "cust-42"


def test_a_bulk_subscription_job_leaves_the_external_id_out() -> None:
    # Klaviyo's bulk subscription job schema has no external_id on its profiles.
    subscription = Subscription(channels=("email",), email="jane@example.com", external_id="cust-42")
    server = subscription_request(subscription, "L", True).body["data"]["attributes"]["profiles"]["data"][0]
    assert "external_id" not in server["attributes"]
