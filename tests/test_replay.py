"""The replay planner and stats: what gets sent, what is counted, and how."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mparticle_klaviyo.config import Connection, ConnectionSettings
from mparticle_klaviyo.delivery import Result
from mparticle_klaviyo.jobs.inputs import read_inputs
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.replay import ACCOUNT_MISMATCH, DUPLICATE_IN_INPUT, ReplayStats, RequestPlanner

NOW_MS = 1_764_000_000_000.0


def connection(**settings: Any) -> Connection:
    table = {"public_api_key": "DEMO01", "list_id": "LIST01", **settings}
    return Connection("test", ConnectionSettings.model_validate(table), table)


def batch(user: int, events: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "source_request_id": f"r{user}",
        "user_identities": {"email": f"u{user}@example.com"},
        "consent_state": {"gdpr": {"news": {"consented": True}}},
        "events": [
            {"event_type": "custom_event", "data": {"event_name": "E", "source_message_id": f"m{user}-{n}"}}
            for n in range(events)
        ],
        **extra,
    }


def plan(tmp_path: Path, docs: list[Any], conn: Connection | None = None) -> tuple[list[KlaviyoRequest], ReplayStats]:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(d) + "\n" for d in docs))
    stats = ReplayStats()
    planner = RequestPlanner(conn or connection(consent_mapping={"news": "email"}), stats, NOW_MS)
    return list(planner.requests(read_inputs([source]))), stats


def test_client_mode_plans_one_request_per_event_and_one_subscription_per_profile(tmp_path: Path) -> None:
    requests, stats = plan(tmp_path, [batch(1, events=3), batch(2, events=2)])
    assert [r.kind for r in requests] == ["subscription", "event", "event", "event", "subscription", "event", "event"]
    assert (stats.batches, stats.events_in, stats.events_mapped, stats.requests_planned) == (2, 5, 5, 7)
    assert stats.input_done


def test_a_profile_is_subscribed_once_per_replay_however_many_batches_carry_the_consent(tmp_path: Path) -> None:
    requests, _ = plan(tmp_path, [batch(1), batch(1), batch(1)])
    assert sum(r.kind == "subscription" for r in requests) == 1


def test_server_mode_packs_events_of_many_batches_into_one_job(tmp_path: Path) -> None:
    conn = connection(private_api_key="pk_test", consent_mapping={"news": "email"})
    requests, _ = plan(tmp_path, [batch(u, events=2) for u in range(5)], conn)
    jobs = [r for r in requests if r.kind == "event_bulk"]
    assert len(jobs) == 1
    assert len(jobs[0].event_keys) == 10
    assert len(jobs[0].body["data"]["attributes"]["events-bulk-create"]["data"]) == 5
    [subscriptions] = [r for r in requests if r.kind == "subscription_bulk"]
    assert len(subscriptions.body["data"]["attributes"]["profiles"]["data"]) == 5


def test_input_errors_are_recorded_with_their_location_and_pointer(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(batch(1)) + "\n" + '{"events": [{"event_type": 5}]}\n')
    stats = ReplayStats()
    list(RequestPlanner(connection(), stats, NOW_MS).requests(read_inputs([source])))
    [(location, error)] = stats.input_errors
    assert location.endswith("in.jsonl:2")
    assert error.pointer == "/events/0/event_type"


def test_drops_and_warnings_are_counted_by_reason(tmp_path: Path) -> None:
    bad_phone = batch(3, user_identities={"email": "u3@example.com", "mobile_number": "12"})
    _, stats = plan(tmp_path, [batch(1, device_info={"platform": "Desktop"}), bad_phone])
    assert stats.dropped["unsupported_platform"] == 1
    assert stats.warnings["invalid_phone"] == 1


def test_a_firehose_request_for_another_account_is_not_sent_with_these_keys(tmp_path: Path) -> None:
    firehose = {
        "type": "event_processing_request",
        "account": {"account_settings": {"publicApiKey": "OTHER1"}},
        "user_identities": [{"type": "email", "value": "f@example.com"}],
        "events": [{"type": "session_start", "id": "a", "timestamp_ms": NOW_MS}],
    }
    requests, stats = plan(tmp_path, [firehose])
    assert requests == []
    assert stats.dropped[ACCOUNT_MISMATCH] == 1


def test_an_invalid_firehose_setting_is_an_input_error_naming_the_setting(tmp_path: Path) -> None:
    firehose = {
        "type": "event_processing_request",
        "account": {"account_settings": {"phoneIdentifier": "Fax"}},
        "events": [],
    }
    _, stats = plan(tmp_path, [firehose])
    [(_, error)] = stats.input_errors
    assert error.pointer == "/account/account_settings/phoneIdentifier"


def test_results_count_every_event_a_request_carried(tmp_path: Path) -> None:
    stats = ReplayStats()
    job = KlaviyoRequest(
        path="/api/event-bulk-create-jobs", auth="private", kind="event_bulk", body={}, event_keys=("a", "b")
    )
    sub = KlaviyoRequest(path="/client/subscriptions", auth="public", kind="subscription", body={})
    stats.record_result(job, Result(status="delivered", attempts=1))
    stats.record_result(sub, Result(status="delivered", attempts=1))
    stats.record_result(job, Result(status="failed", attempts=8, reason="retries_exhausted", detail="503"))
    assert (stats.events_delivered, stats.subscriptions_delivered, stats.requests_done) == (2, 1, 3)
    assert stats.failed == {"retries_exhausted": 2}
    assert stats.failure_details["retries_exhausted"] == "503"


SERVER = {"private_api_key": "pk_test", "consent_mapping": {"news": "email"}}


def profiles(request: KlaviyoRequest) -> list[str]:
    """The emails a bulk request is for: its subscribed profiles, or its entries' profiles."""
    attributes = request.body["data"]["attributes"]
    if request.kind == "subscription_bulk":
        return [p["attributes"]["email"] for p in attributes["profiles"]["data"]]
    return [e["attributes"]["profile"]["data"]["attributes"]["email"] for e in attributes["events-bulk-create"]["data"]]


def test_server_mode_packs_consents_of_many_batches_into_jobs_of_1000_profiles(tmp_path: Path) -> None:
    requests, stats = plan(tmp_path, [batch(u) for u in range(2500)], connection(**SERVER))
    kinds = [r.kind for r in requests]
    assert kinds == ["subscription_bulk", "event_bulk"] * 3
    subscriptions = [r for r in requests if r.kind == "subscription_bulk"]
    assert [len(profiles(r)) for r in subscriptions] == [1000, 1000, 500]
    assert sorted(e for r in subscriptions for e in profiles(r)) == sorted(f"u{u}@example.com" for u in range(2500))
    assert stats.requests_planned == 6


def test_a_batchs_consent_goes_out_no_later_than_the_first_job_carrying_its_events(tmp_path: Path) -> None:
    # 3 events a batch: bulk jobs are cut inside batches, and subscription jobs stay part-filled.
    requests, _ = plan(tmp_path, [batch(u, events=3) for u in range(700)], connection(**SERVER))
    subscribed: set[str] = set()
    for request in requests:
        if request.kind == "subscription_bulk":
            subscribed.update(profiles(request))
        else:
            assert set(profiles(request)) <= subscribed
    assert len(subscribed) == 700
    assert sum(r.kind == "subscription_bulk" for r in requests) == sum(r.kind == "event_bulk" for r in requests) == 3


def test_consents_for_another_list_or_channel_set_go_in_jobs_of_their_own(tmp_path: Path) -> None:
    sms = {"news": {"consented": True}, "texts": {"consented": True}}
    docs = [
        batch(1),
        batch(
            2, user_identities={"email": "u2@example.com", "mobile_number": "+15555550100"}, consent_state={"gdpr": sms}
        ),
        batch(3),
    ]
    conn = connection(**{**SERVER, "consent_mapping": {"news": "email", "texts": "sms"}})
    requests, _ = plan(tmp_path, docs, conn)
    jobs = [r for r in requests if r.kind == "subscription_bulk"]
    assert sorted(profiles(r) for r in jobs) == [["u1@example.com", "u3@example.com"], ["u2@example.com"]]


def test_an_event_repeated_in_the_input_is_sent_once_and_counted(tmp_path: Path) -> None:
    again = batch(1, user_attributes={"$FirstName": "Anna"})
    requests, stats = plan(tmp_path, [batch(1), again, batch(2)], connection(**SERVER))
    [job] = [r for r in requests if r.kind == "event_bulk"]
    assert job.event_keys == ("m1-0", "m2-0")
    first = job.body["data"]["attributes"]["events-bulk-create"]["data"][0]["attributes"]["profile"]["data"]
    assert first["attributes"]["first_name"] == "Anna"
    assert stats.dropped[DUPLICATE_IN_INPUT] == 1
    assert stats.events_mapped == 3


def bulk_job(*entries: list[str]) -> KlaviyoRequest:
    data = [
        {
            "type": "event-bulk-create",
            "attributes": {
                "profile": {"data": {"type": "profile", "attributes": {"email": f"p{n}@example.com"}}},
                "events": {"data": [{"type": "event", "attributes": {"unique_id": uid}} for uid in uids]},
            },
        }
        for n, uids in enumerate(entries)
    ]
    keys = tuple(uid for uids in entries for uid in uids)
    body = {"data": {"type": "event-bulk-create-job", "attributes": {"events-bulk-create": {"data": data}}}}
    return KlaviyoRequest(
        path="/api/event-bulk-create-jobs", auth="private", kind="event_bulk", body=body, event_keys=keys
    )


def refused(pointer: str | None, status: int = 400) -> Result:
    return Result(status="failed", attempts=1, reason=f"http_{status}", detail="invalid", pointer=pointer)


def test_a_bulk_job_refused_for_one_entry_fails_that_entry_and_returns_the_rest() -> None:
    stats = ReplayStats()
    stats.requests_planned = 1
    pointer = "/data/attributes/events-bulk-create/data/1/attributes/profile/data/attributes/email"
    [rest] = stats.settle(bulk_job(["a", "b"], ["c", "d"], ["e"]), refused(pointer))
    assert rest.event_keys == ("a", "b", "e")
    assert stats.failed == {"http_400": 2}
    assert (stats.requests_planned, stats.requests_done) == (2, 1)
    stats.settle(rest, Result(status="delivered", attempts=1))
    assert (stats.events_delivered, stats.requests_done) == (3, 2)


def test_a_job_without_a_pointer_to_an_entry_fails_whole() -> None:
    for pointer in (None, "/data/attributes/events-bulk-create/data", "/data/attributes/events-bulk-create/data/7"):
        stats = ReplayStats()
        assert stats.settle(bulk_job(["a"], ["b"]), refused(pointer)) == []
        assert stats.failed == {"http_400": 2}


def test_nothing_is_resent_when_the_named_entry_was_all_of_the_job() -> None:
    stats = ReplayStats()
    assert stats.settle(bulk_job(["a", "b"]), refused("/data/attributes/events-bulk-create/data/0")) == []
    assert stats.failed == {"http_400": 2}
