"""Contract, part 5: data outlives a store object, stores on one storage agree, closed means closed."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing

import pytest

from mparticle_klaviyo.store.base import DeadFilter, EnqueueResult, JobState, JobStore
from mparticle_klaviyo.store.errors import StoreClosedError
from tests.store.contract_base import ContractBase, enqueue_and_claim
from tests.store.helpers import LEASE_S, T0, A, ids, keys, new_jobs

CALLS: dict[str, Callable[[JobStore], object]] = {
    "enqueue": lambda store: store.enqueue(new_jobs("k1"), T0),
    "claim": lambda store: store.claim(A, 1, LEASE_S, T0),
    "ack": lambda store: store.ack([1]),
    "retry": lambda store: store.retry([1], T0, "503", failed=True),
    "bury": lambda store: store.bury([1], "r1", "400", T0),
    "release": lambda store: store.release([1]),
    "release_expired": lambda store: store.release_expired(T0),
    "connections": lambda store: store.connections(),
    "counts": lambda store: store.counts(),
    "backlog": lambda store: store.backlog(),
    "dead": lambda store: store.dead(DeadFilter()),
    "redrive": lambda store: store.redrive(DeadFilter(), T0),
    "purge": lambda store: store.purge(DeadFilter()),
    "failing_jobs": lambda store: store.failing_jobs(A),
    "forget_before": lambda store: store.forget_before(T0),
}


class LifecycleContract(ContractBase):
    """How a store behaves across opening, sharing and closing."""

    def test_jobs_survive_closing_and_reopening(self, store: JobStore) -> None:
        enqueue_and_claim(store, "k1")
        store.enqueue(new_jobs("k2"), T0)
        store.close()
        with closing(self.open_store()) as reopened:
            assert [(c.state, c.count) for c in reopened.counts()] == [(JobState.READY, 1), (JobState.LEASED, 1)]

    def test_the_dedup_memory_survives_reopening(self, store: JobStore) -> None:
        store.enqueue(new_jobs("k1"), T0)
        store.close()
        with closing(self.open_store()) as reopened:
            assert reopened.enqueue(new_jobs("k1"), T0 + 1) == EnqueueResult(stored=0, duplicates=1)

    def test_ids_keep_growing_after_reopening_an_emptied_store(self, store: JobStore) -> None:
        first = enqueue_and_claim(store, "k1", "k2")
        store.ack(ids(first))
        store.close()
        with closing(self.open_store()) as reopened:
            assert enqueue_and_claim(reopened, "k3")[0].id > max(ids(first))

    def test_two_open_stores_see_each_others_commits(self, store: JobStore) -> None:
        with closing(self.open_store()) as other:
            store.enqueue(new_jobs("k1"), T0)
            other.enqueue(new_jobs("k2"), T0)
            assert (store.backlog(), other.backlog()) == (2, 2)

    def test_a_job_leased_through_one_store_is_not_claimed_through_another(self, store: JobStore) -> None:
        with closing(self.open_store()) as other:
            store.enqueue(new_jobs("k1", "k2"), T0)
            first = store.claim(A, 1, LEASE_S, T0)
            assert keys(other.claim(A, 10, LEASE_S, T0)) == ["k2"]
            assert keys(first) == ["k1"]

    @pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
    def test_every_method_fails_clearly_after_close(self, store: JobStore, call: Callable[[JobStore], object]) -> None:
        store.close()
        with pytest.raises(StoreClosedError):
            call(store)

    def test_closing_twice_is_harmless(self, store: JobStore) -> None:
        store.close()
        store.close()
