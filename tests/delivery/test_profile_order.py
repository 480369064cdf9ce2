"""What of a profile may be open at once: consent changes of two kinds never, an erasure alone."""

from __future__ import annotations

import time

from mparticle_klaviyo.delivery.profile_order import ProfileOrder
from mparticle_klaviyo.jobs.erasure import ERASURE
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
    order = ProfileOrder()
    start, held = order.admit([job(1, SUBSCRIPTION), job(2, UNSUBSCRIPTION)])
    assert (ids(start), ids(held)) == ([1], [2])


def test_it_may_start_once_the_subscription_settled() -> None:
    order = ProfileOrder()
    subscribe = job(1, SUBSCRIPTION)
    order.admit([subscribe])
    assert ids(order.admit([job(2, UNSUBSCRIPTION)])[1]) == [2]
    order.settled([subscribe])
    assert ids(order.admit([job(2, UNSUBSCRIPTION)])[0]) == [2]
    assert len(order) == 1


def test_a_subscription_after_an_open_unsubscription_waits_too() -> None:
    order = ProfileOrder()
    order.admit([job(1, UNSUBSCRIPTION)])
    assert ids(order.admit([job(2, SUBSCRIPTION)])[1]) == [2]


def test_other_profiles_events_and_same_kind_changes_are_not_held() -> None:
    order = ProfileOrder()
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
    order = ProfileOrder()
    order.admit([job(1, SUBSCRIPTION)])
    order.settled([job(9, UNSUBSCRIPTION), job(10, EVENT)])
    assert len(order) == 1


def test_an_erasure_waits_for_everything_open_of_its_profile() -> None:
    order = ProfileOrder()
    event = job(1, EVENT)
    order.admit([event])
    assert ids(order.admit([job(2, ERASURE)])[1]) == [2]
    order.settled([event])
    assert ids(order.admit([job(2, ERASURE)])[0]) == [2]


def test_while_an_erasure_is_open_nothing_of_its_profile_starts() -> None:
    order = ProfileOrder()
    erasure = job(1, ERASURE)
    start, held = order.admit([erasure, job(2, EVENT), job(3, SUBSCRIPTION), job(4, EVENT, "email:bob@example.com")])
    assert (ids(start), ids(held)) == ([1, 4], [2, 3])
    order.settled([erasure])
    assert ids(order.admit([job(2, EVENT)])[0]) == [2]
