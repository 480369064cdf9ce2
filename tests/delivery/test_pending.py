"""Server-mode jobs waiting for a send: each bulk request is packed from the front, at send time."""

from __future__ import annotations

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.delivery.pending import PendingEvents, PendingSubscriptions
from mparticle_klaviyo.delivery.units import Unit, culprits
from mparticle_klaviyo.jobs.plan import SUBSCRIPTION, UNSUBSCRIPTION
from mparticle_klaviyo.klaviyo.limits import MAX_BULK_UNSUBSCRIBE_PROFILES
from mparticle_klaviyo.store.base import Job
from tests.delivery.test_units import URL, bulk_event_count, jobs_of, mapped
from tests.service.e2e_helpers import connection, custom_event, purchase_event, user_batch


def drain(pending: PendingEvents | PendingSubscriptions) -> list[Unit]:
    """Every request ``pending`` packs, taken one after another as sends are admitted."""
    units = []
    while (unit := pending.take()) is not None:
        units.append(unit)
    return units


def test_jobs_are_packed_into_bulk_requests_of_at_most_1000_events() -> None:
    conn = connection(URL, server=True)
    pending = PendingEvents()
    jobs = jobs_of([user_batch(f"u{n}", [custom_event(f"m{n}-{k}") for k in range(5)]) for n in range(500)], conn)
    for item in mapped(jobs, conn):
        pending.add(item)
    assert pending.requests_wanted() == 3
    units = drain(pending)
    assert [bulk_event_count(unit) for unit in units] == [1000, 1000, 500]
    assert [len(unit.jobs) for unit in units] == [1000, 1000, 500]
    assert all(request.path == "/api/event-bulk-create-jobs" for unit in units for request in unit.requests)
    assert len(pending) == 0


def test_a_job_is_never_split_across_bulk_requests() -> None:
    conn = connection(URL, server=True)
    pending = PendingEvents()
    # Purchases of 2 products are 3 Klaviyo events each: 333 fit in 999 events, the 334th starts a new request.
    for item in mapped(jobs_of([user_batch(f"u{n}", [purchase_event(f"p{n}")]) for n in range(400)], conn), conn):
        pending.add(item)
    units = drain(pending)
    assert [bulk_event_count(unit) for unit in units] == [999, 201]
    assert [len(unit.jobs) for unit in units] == [333, 67]


def test_nothing_waiting_packs_nothing() -> None:
    assert PendingEvents().take() is None
    assert PendingSubscriptions().take() is None


def packed_subscriptions(jobs: list[Job], conn: Connection) -> list[Unit]:
    pending = PendingSubscriptions()
    for item in mapped(jobs, conn):
        pending.add(item)
    return drain(pending)


def test_many_profiles_consents_share_one_bulk_subscription_job() -> None:
    conn = connection(URL, server=True)
    jobs = [job for job in jobs_of([user_batch(f"u{n}", [], consent=True) for n in range(5)], conn)]
    assert {job.kind for job in jobs} == {SUBSCRIPTION}
    [unit] = packed_subscriptions(jobs, conn)
    profiles = unit.requests[0].body["data"]["attributes"]["profiles"]["data"]
    assert unit.requests[0].path == "/api/profile-subscription-bulk-create-jobs"
    assert [p["attributes"]["email"] for p in profiles] == [f"u{n}@example.com" for n in range(5)]
    assert unit.jobs == tuple(jobs)


def test_a_rejected_profile_of_a_packed_subscription_job_names_only_its_own_job() -> None:
    conn = connection(URL, server=True)
    jobs = jobs_of([user_batch(f"u{n}", [], consent=True) for n in range(3)], conn)
    [unit] = packed_subscriptions(jobs, conn)
    assert culprits(unit, "/data/attributes/profiles/data/1/attributes/email") == [jobs[1]]
    assert culprits(unit, "/data/attributes/custom_source") == jobs


def test_unsubscriptions_are_packed_at_most_100_profiles_a_job() -> None:
    conn = connection(URL, server=True, consent_removal=True)
    batches = []
    for n in range(150):
        batch = user_batch(f"u{n}", [])
        batch["consent_state"] = {"gdpr": {"email_marketing": {"consented": False, "timestamp_unixtime_ms": 1}}}
        batches.append(batch)
    jobs = jobs_of(batches, conn)
    assert {job.kind for job in jobs} == {UNSUBSCRIPTION}
    pending = PendingSubscriptions(MAX_BULK_UNSUBSCRIBE_PROFILES)
    for item in mapped(jobs, conn):
        pending.add(item)
    assert pending.requests_wanted() == 2
    units = drain(pending)
    assert [len(u.jobs) for u in units] == [100, 50]
    assert {u.requests[0].path for u in units} == {"/api/profile-subscription-bulk-delete-jobs"}
    first = units[0].requests[0].body["data"]["attributes"]["profiles"]["data"][0]["attributes"]
    assert first["subscriptions"] == {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}}
