"""Accepted batches -> store jobs: one per forwardable event or consent grant, keyed for dedup."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.plan import (
    EVENT,
    SUBSCRIPTION,
    UNSUBSCRIPTION,
    decode_payload,
    event_job_key,
    plan_jobs,
    unique_id_of,
)
from mparticle_klaviyo.mparticle.decode import decode_document
from mparticle_klaviyo.mparticle.model import UserBatch
from tests.service.live import CONNECTIONS, make_config
from tests.service.messages import batch, event, firehose_events

ACME = make_config(Path("unused.sqlite3")).connections["acme"]


def user_batches(document: Any) -> list[UserBatch]:
    return decode_document(msgspec.json.encode(document))


def plan(document: Any, connection_table: dict[str, Any] | None = None) -> Any:
    connection = ACME
    if connection_table is not None:
        connection = make_config(Path("unused.sqlite3"), {"acme": connection_table}).connections["acme"]
    return plan_jobs(user_batches(document), connection, time.time() * 1000)


def test_each_forwardable_event_becomes_one_job_keyed_by_its_unique_id() -> None:
    planned = plan(batch("Ada@Example.com", [event("One", "m1"), event("Two", "m2")]))
    assert [(j.connection, unique_id_of(j.key), j.profile_key, j.kind) for j in planned.jobs] == [
        ("acme", "m1", "email:ada@example.com", EVENT),
        ("acme", "m2", "email:ada@example.com", EVENT),
    ]
    stamp = decode_payload(planned.jobs[0].payload).events[0].timestamp_ms
    assert planned.jobs[0].key == event_job_key(stamp, "m1", "email:ada@example.com", "One")
    assert planned.events == 2


def test_an_event_id_attribute_is_the_key_before_the_message_id() -> None:
    planned = plan(batch(events=[event(message_id="m1", custom_attributes={"$event_id": "order-7"})]))
    assert [unique_id_of(job.key) for job in planned.jobs] == ["order-7"]


def test_a_job_holds_its_users_batch_with_only_that_event() -> None:
    planned = plan(batch(events=[event("One", "m1"), event("Two", "m2")]))
    stored = [decode_payload(job.payload) for job in planned.jobs]
    assert [[e.name for e in b.events] for b in stored] == [["One"], ["Two"]]
    assert all(b.identities == {"email": "ada@example.com"} for b in stored)


def test_a_purchase_that_maps_to_several_klaviyo_events_is_one_job() -> None:
    purchase = {
        "event_type": "commerce_event",
        "data": {
            "source_message_id": "buy-1",
            "timestamp_unixtime_ms": int(time.time() * 1000),
            "product_action": {
                "action": "purchase",
                "transaction_id": "T1",
                "total_amount": 20,
                "products": [{"id": "a", "name": "A", "price": 10, "quantity": 1}, {"id": "b", "price": 10}],
            },
        },
    }
    planned = plan(batch(events=[purchase]))
    assert [unique_id_of(job.key) for job in planned.jobs] == ["buy-1"]


def test_a_phone_only_profile_is_keyed_by_its_phone() -> None:
    document = {"events": [event()], "user_identities": {"mobile_number": "+1 617 555 0100"}}
    planned = plan(document)
    assert [job.profile_key for job in planned.jobs] == ["phone:+16175550100"]


def test_events_that_cannot_be_sent_are_counted_by_reason_and_get_no_job() -> None:
    document = batch(events=[event(), {"event_type": "crash_report", "data": {}}, event(None, "m3")])
    planned = plan(document)
    assert [unique_id_of(job.key) for job in planned.jobs] == ["msg-1"]
    assert dict(planned.dropped) == {"unsupported_event_type": 1, "missing_event_name": 1}


def test_batches_without_ids_get_the_same_keys_every_time() -> None:
    document = batch(events=[event(message_id=None), event("Two", message_id=None)])
    first, again = plan(document), plan(document)
    assert [job.key for job in first.jobs] == [job.key for job in again.jobs]
    assert len({job.key for job in first.jobs}) == 2


def test_a_different_batch_without_ids_gets_different_keys() -> None:
    one = plan(batch("a@example.com", [event(message_id=None)]))
    other = plan(batch("b@example.com", [event(message_id=None)]))
    assert one.jobs[0].key != other.jobs[0].key


def test_a_granted_consent_becomes_a_subscription_job() -> None:
    table = {**CONNECTIONS["acme"], "consent_mapping": {"marketing": "email"}}
    document = batch(events=[], consent_state={"gdpr": {"marketing": {"consented": True}}})
    planned = plan(document, table)
    assert [(job.kind, job.key, job.profile_key) for job in planned.jobs] == [
        (SUBSCRIPTION, "consent:email:ada@example.com:email", "email:ada@example.com")
    ]
    assert decode_payload(planned.jobs[0].payload).events == ()


def test_a_consents_time_is_part_of_its_key_so_each_change_is_a_job_and_a_repeat_is_not() -> None:
    table = {**CONNECTIONS["acme"], "consent_mapping": {"marketing": "email"}}

    def keys(stamp: int) -> list[str]:
        state = {"gdpr": {"marketing": {"consented": True, "timestamp_unixtime_ms": stamp}}}
        return [job.key for job in plan(batch(events=[], consent_state=state), table).jobs]

    assert keys(1_700_000_000_000) == ["consent:email:ada@example.com:email@1700000000000"]
    assert keys(1_700_000_000_000) == keys(1_700_000_000_000)
    assert keys(1_700_000_000_001) != keys(1_700_000_000_000)


def test_with_consent_removal_a_revoked_consent_becomes_an_unsubscription_job() -> None:
    table = {
        **CONNECTIONS["acme"],
        "private_api_key": "pk_" + "r" * 32,
        "consent_mapping": {"marketing": "email", "texts": "sms"},
        "consent_removal": True,
    }
    state = {
        "gdpr": {
            "marketing": {"consented": True, "timestamp_unixtime_ms": 5},
            "texts": {"consented": False, "timestamp_unixtime_ms": 7},
        }
    }
    planned = plan(batch(events=[], consent_state=state, user_identities={"email": "ada@example.com"}), table)
    assert [(job.kind, job.key, job.profile_key) for job in planned.jobs] == [
        (SUBSCRIPTION, "consent:email:ada@example.com:email@5", "email:ada@example.com"),
    ]
    assert dict(planned.dropped) == {"consent_missing_identifier": 1}, "an SMS unsubscription needs a phone"
    with_phone = batch(
        events=[], consent_state=state, user_identities={"email": "ada@example.com", "mobile_number": "+15555550100"}
    )
    kinds = [(job.kind, job.key) for job in plan(with_phone, table).jobs]
    assert kinds == [
        (SUBSCRIPTION, "consent:email:ada@example.com:email@5"),
        (UNSUBSCRIPTION, "unconsent:email:ada@example.com:sms@7"),
    ]


def test_a_revoked_consent_is_dropped_not_queued() -> None:
    table = {**CONNECTIONS["acme"], "consent_mapping": {"marketing": "email"}}
    document = batch(events=[], consent_state={"gdpr": {"marketing": {"consented": False}}})
    planned = plan(document, table)
    assert planned.jobs == []
    assert dict(planned.dropped) == {"consent_removal_not_supported": 1}


def test_firehose_account_settings_apply_to_that_request_only() -> None:
    message = firehose_events(settings={"externalEmailIdentityType": "Other2"})
    message["user_identities"] = [{"type": "other2", "encoding": "raw", "value": "two@example.com"}]
    overridden = plan(message)
    message.pop("account")
    plain = plan(message)
    assert [job.profile_key for job in overridden.jobs] == ["email:two@example.com"]
    assert plain.jobs == []


def test_an_invalid_firehose_setting_raises_an_input_error_naming_it() -> None:
    with pytest.raises(InputError) as error:
        plan(firehose_events(settings={"externalEmailIdentityType": "Fax"}))
    assert error.value.pointer == "/account/account_settings/externalEmailIdentityType"


def test_empty_firehose_settings_keep_the_configured_values() -> None:
    planned = plan(firehose_events(settings={"externalEmailIdentityType": "", "phoneIdentifier": ""}))
    assert [job.profile_key for job in planned.jobs] == ["email:ada@example.com"]


def test_decode_payload_reads_back_what_plan_jobs_stored() -> None:
    (user_batch,) = user_batches(batch())
    (job,) = plan_jobs([user_batch], ACME, time.time() * 1000).jobs
    stored = decode_payload(job.payload)
    assert stored.identities == user_batch.identities
    assert stored.events == user_batch.events
    assert stored.batch_key  # pinned, so that fallback ids survive the round trip


def test_an_attribute_integer_beyond_64_bits_is_stored_and_read_back() -> None:
    huge = 2**80
    planned = plan(batch(events=[event(custom_attributes={"n": huge})], user_attributes={"big": -huge}))
    (stored,) = [decode_payload(job.payload) for job in planned.jobs]
    assert stored.events[0].attributes == {"n": huge}
    assert stored.user_attributes == {"big": -huge}


def test_a_consent_job_of_a_user_with_a_huge_integer_attribute_is_stored_too() -> None:
    table = {**CONNECTIONS["acme"], "consent_mapping": {"marketing": "email"}}
    document = batch(
        events=[], consent_state={"gdpr": {"marketing": {"consented": True}}}, user_attributes={"n": 2**70}
    )
    (job,) = plan(document, table).jobs
    assert decode_payload(job.payload).user_attributes == {"n": 2**70}


def test_job_keys_sort_by_event_time_so_the_dedup_index_grows_at_its_end() -> None:
    early = event("E", "zzz", timestamp_unixtime_ms=1_700_000_000_000)
    late = event("E", "aaa", timestamp_unixtime_ms=1_700_000_001_000)
    planned = plan(batch(events=[late, early]))
    assert sorted(job.key for job in planned.jobs) == [planned.jobs[1].key, planned.jobs[0].key]


def test_the_same_event_sent_again_gets_the_same_key() -> None:
    document = batch(events=[event("E", "m1", timestamp_unixtime_ms=1_700_000_000_000)])
    assert [j.key for j in plan(document).jobs] == [j.key for j in plan(document).jobs]


def test_an_event_over_klaviyos_limits_gets_a_job_and_is_dropped_when_delivery_maps_it() -> None:
    # Ingest plans without building events (it would map every batch twice); the size limits
    # need the built event, so delivery decides them: the job becomes a dead letter there.
    planned = plan(batch(events=[event(custom_attributes={"text": "x" * 200_000})]))
    assert [unique_id_of(job.key) for job in planned.jobs] == ["msg-1"]
    assert dict(planned.dropped) == {}
