"""A profile's subscribe and unsubscribe are never open at once: the later one waits."""

from __future__ import annotations

import time

from mparticle_klaviyo.delivery.consent_order import ConsentOrder
from mparticle_klaviyo.jobs.plan import EVENT, SUBSCRIPTION, UNSUBSCRIPTION
from mparticle_klaviyo.store.base import Job, JobState


def job(job_id: int, kind: str, profile: str = "email:ada@example.com") -> Job:
    now = time.time()
    return Job(
        id=job_id,
        connection="acme",
        key=f"k{job_id}",
        profile_key=profile,
        kind=kind,
        payload=b"",
        state=JobState.LEASED,
        attempts=0,
        throttles=0,
        created_at=now,
        run_at=now,
    )


def ids(jobs: list[Job]) -> list[int]:
    return [j.id for j in jobs]


def test_an_unsubscription_claimed_with_the_profiles_earlier_subscription_waits() -> None:
    order = ConsentOrder()
    start, held = order.admit([job(1, SUBSCRIPTION), job(2, UNSUBSCRIPTION)])
    assert (ids(start), ids(held)) == ([1], [2])


def test_it_may_start_once_the_subscription_settled() -> None:
    order = ConsentOrder()
    subscribe = job(1, SUBSCRIPTION)
    order.admit([subscribe])
    assert ids(order.admit([job(2, UNSUBSCRIPTION)])[1]) == [2]
    order.settled([subscribe])
    assert ids(order.admit([job(2, UNSUBSCRIPTION)])[0]) == [2]
    assert len(order) == 1


def test_a_subscription_after_an_open_unsubscription_waits_too() -> None:
    order = ConsentOrder()
    order.admit([job(1, UNSUBSCRIPTION)])
    assert ids(order.admit([job(2, SUBSCRIPTION)])[1]) == [2]


def test_other_profiles_events_and_same_kind_changes_are_not_held() -> None:
    order = ConsentOrder()
    start, held = order.admit(
        [
            job(1, SUBSCRIPTION),
            job(2, SUBSCRIPTION),
            job(3, UNSUBSCRIPTION, "email:bob@example.com"),
            job(4, EVENT),
            job(5, UNSUBSCRIPTION, ""),
        ]
    )
    assert (ids(start), held) == ([1, 2, 3, 4, 5], [])


def test_settling_a_job_that_was_never_open_changes_nothing() -> None:
    order = ConsentOrder()
    order.admit([job(1, SUBSCRIPTION)])
    order.settled([job(9, UNSUBSCRIPTION), job(10, EVENT)])
    assert len(order) == 1
