"""Delivery leases per Klaviyo account on the machine's PostgreSQL: share, expiry, takeover, fencing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import closing

import pytest

from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.base import DeadFilter, JobState
from mparticle_klaviyo.store.errors import LeaseLostError
from mparticle_klaviyo.store.postgres import PostgresJobStore
from tests.store.helpers import LEASE_S, T0, A, B, hold_store_thread, ids, keys, new_job, new_jobs

TTL = 15.0
# Two Klaviyo accounts, one connection each (the connections are the store's A and B).
ACCOUNTS = {"klaviyo-x": [A], "klaviyo-y": [B]}


@pytest.fixture
def store(postgres_url: str) -> Iterator[PostgresJobStore]:
    with closing(PostgresJobStore(postgres_url)) as opened:
        yield opened


def hold(store: PostgresJobStore, node: str, held: dict[str, int], now: float) -> dict[str, int]:
    return store.hold_leases(node, ACCOUNTS, held, now, TTL)


def test_a_lone_node_takes_every_account(store: PostgresJobStore) -> None:
    assert sorted(hold(store, "n1", {}, T0)) == ["klaviyo-x", "klaviyo-y"]


def test_a_live_lease_is_not_taken_by_another_node(store: PostgresJobStore) -> None:
    hold(store, "n1", {}, T0)
    assert hold(store, "n2", {}, T0 + 1) == {}


def test_a_heartbeat_renews_the_leases_with_their_epochs(store: PostgresJobStore) -> None:
    first = hold(store, "n1", {}, T0)
    assert hold(store, "n1", first, T0 + TTL - 1) == first
    assert hold(store, "n2", {}, T0 + TTL + 1) == {}, "renewed: still live past the first expiry"


def test_a_node_that_joins_gets_its_share_once_the_other_gives_up_its_extra(store: PostgresJobStore) -> None:
    n1 = hold(store, "n1", {}, T0)
    assert hold(store, "n2", {}, T0 + 1) == {}  # n2 is live now: the share is 1 each
    n1 = hold(store, "n1", n1, T0 + 2)
    n2 = hold(store, "n2", {}, T0 + 3)
    assert len(n1) == len(n2) == 1
    assert set(n1) | set(n2) == set(ACCOUNTS)
    [epoch] = n2.values()
    assert epoch > max(first for first in hold(store, "n1", n1, T0 + 4).values())


def test_an_expired_lease_is_taken_over_with_a_higher_epoch(store: PostgresJobStore) -> None:
    n1 = hold(store, "n1", {}, T0)
    n2 = hold(store, "n2", {}, T0 + TTL + 1)  # n1 has not renewed: dead, its node row expired too
    assert sorted(n2) == sorted(ACCOUNTS)
    assert all(n2[account] > n1[account] for account in ACCOUNTS)
    assert hold(store, "n1", n1, T0 + TTL + 2) == {}, "a node whose leases were taken renews nothing"


def test_taking_over_returns_the_jobs_leased_under_the_old_epoch(store: PostgresJobStore) -> None:
    n1 = hold(store, "n1", {}, T0)
    store.enqueue(new_jobs("k1", "k2"), T0)
    claimed = store.claim(A, 10, LEASE_S, T0, epoch=n1["klaviyo-x"])
    assert [job.epoch for job in claimed] == [n1["klaviyo-x"]] * 2
    n2 = hold(store, "n2", {}, T0 + TTL + 1)
    again = store.claim(A, 10, LEASE_S, T0 + TTL + 1, epoch=n2["klaviyo-x"])
    assert (keys(again), [job.epoch for job in again]) == (["k1", "k2"], [n2["klaviyo-x"]] * 2)


def test_a_stale_owners_ack_is_refused_and_the_job_stays(store: PostgresJobStore) -> None:
    old = hold(store, "n1", {}, T0)["klaviyo-x"]
    store.enqueue(new_jobs("k1"), T0)
    claimed = store.claim(A, 10, LEASE_S, T0, epoch=old)
    new = hold(store, "n2", {}, T0 + TTL + 1)["klaviyo-x"]
    with pytest.raises(LeaseLostError):
        store.ack(ids(claimed), epoch=old)
    [job] = store.claim(A, 10, LEASE_S, T0 + TTL + 1, epoch=new)
    store.ack([job.id], epoch=new)
    assert store.backlog() == 0


@pytest.mark.parametrize("write", ["retry", "bury", "release", "claim"])
def test_every_write_of_a_stale_owner_is_refused(store: PostgresJobStore, write: str) -> None:
    old = hold(store, "n1", {}, T0)["klaviyo-x"]
    store.enqueue(new_jobs("k1"), T0)
    claimed = ids(store.claim(A, 10, LEASE_S, T0, epoch=old))
    hold(store, "n2", {}, T0 + TTL + 1)
    calls: dict[str, Callable[[], object]] = {
        "retry": lambda: store.retry(claimed, T0 + 99, "503", True, epoch=old),
        "bury": lambda: store.bury(claimed, "invalid", "400", T0, epoch=old),
        "release": lambda: store.release(claimed, epoch=old),
        "claim": lambda: store.claim(A, 10, LEASE_S, T0 + TTL + 1, epoch=old),
    }
    with pytest.raises(LeaseLostError):
        calls[write]()
    [job] = store.claim(A, 10, LEASE_S, T0 + TTL + 1)
    assert (job.state, job.attempts, job.dead_reason) == (JobState.LEASED, 0, None)


def test_a_write_under_a_current_epoch_touches_only_jobs_claimed_under_it(store: PostgresJobStore) -> None:
    epochs = hold(store, "n1", {}, T0)
    store.enqueue([new_job("a1", A), new_job("b1", B)], T0)
    [a1] = store.claim(A, 10, LEASE_S, T0, epoch=epochs["klaviyo-x"])
    [b1] = store.claim(B, 10, LEASE_S, T0, epoch=epochs["klaviyo-y"])
    store.bury([a1.id, b1.id], "invalid", "400", T0, epoch=epochs["klaviyo-x"])
    assert ids(store.dead(DeadFilter())) == [a1.id]


def test_a_given_up_lease_is_taken_at_once(store: PostgresJobStore) -> None:
    n1 = hold(store, "n1", {}, T0)
    store.give_up_leases("n1", sorted(n1))
    assert sorted(hold(store, "n2", {}, T0 + 1)) == sorted(ACCOUNTS)


def test_a_node_that_lost_track_of_its_lease_takes_it_afresh_with_a_new_epoch(store: PostgresJobStore) -> None:
    first = hold(store, "n1", {}, T0)
    again = hold(store, "n1", {}, T0 + 1)  # e.g. its heartbeats failed for longer than the margin
    assert sorted(again) == sorted(first)
    assert all(again[account] > first[account] for account in ACCOUNTS)
    with pytest.raises(LeaseLostError):
        store.claim(A, 10, LEASE_S, T0 + 1, epoch=first["klaviyo-x"])


def test_the_lease_holders_are_listed_by_account(store: PostgresJobStore) -> None:
    epochs = hold(store, "n1", {}, T0)
    assert store.lease_holders() == [(account, "n1", epochs[account], T0 + TTL) for account in sorted(ACCOUNTS)]


def test_acks_of_two_epochs_waiting_together_fail_only_the_stale_ones(postgres_url: str) -> None:
    async def scenario() -> None:
        jobs = PostgresJobStore(postgres_url)
        store = AsyncStore(jobs)
        try:
            first = hold(jobs, "n1", {}, T0)
            jobs.enqueue([new_job("a1", A), new_job("b1", B)], T0)
            [a1] = jobs.claim(A, 10, LEASE_S, T0, epoch=first["klaviyo-x"])
            # klaviyo-x is taken afresh (a new term), klaviyo-y renewed: only x's first epoch is stale.
            second = hold(jobs, "n1", {"klaviyo-y": first["klaviyo-y"]}, T0 + 1)
            assert second["klaviyo-y"] == first["klaviyo-y"] != second["klaviyo-x"]
            [b1] = jobs.claim(B, 10, LEASE_S, T0, epoch=first["klaviyo-y"])
            release = hold_store_thread(store)
            stale = asyncio.ensure_future(store.ack([a1.id], epoch=first["klaviyo-x"]))
            current = asyncio.ensure_future(store.ack([b1.id], epoch=first["klaviyo-y"]))
            await asyncio.sleep(0.05)
            release.set()
            results = await asyncio.gather(stale, current, return_exceptions=True)
            assert isinstance(results[0], LeaseLostError) and results[1] is None
            assert keys(jobs.claim(A, 10, LEASE_S, T0 + 1, epoch=second["klaviyo-x"])) == ["a1"]
            assert jobs.backlog(B) == 0
        finally:
            await store.close()

    asyncio.run(scenario())
