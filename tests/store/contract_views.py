"""Contract, part 4: what the store reports (counts, backlog, connections, failing jobs)."""

from __future__ import annotations

from mparticle_klaviyo.store.base import JobState, JobStore, StateCount
from tests.store.contract_base import ContractBase, enqueue_and_claim
from tests.store.helpers import LEASE_S, T0, A, B, ids, keys, new_jobs


class ViewContract(ContractBase):
    """How the store describes its contents."""

    def test_counts_report_each_connection_and_state_with_the_oldest_created_at(self, store: JobStore) -> None:
        store.enqueue(new_jobs("a1", "a2", "a3"), T0)
        store.enqueue(new_jobs("a4"), T0 + 1)
        store.enqueue(new_jobs("b1", connection=B), T0 + 2)
        store.bury(ids(store.claim(A, 2, LEASE_S, T0 + 3)[1:]), "r1", "400", T0 + 3)
        assert store.counts() == [
            StateCount(A, JobState.READY, 2, T0),
            StateCount(A, JobState.LEASED, 1, T0),
            StateCount(A, JobState.DEAD, 1, T0),
            StateCount(B, JobState.READY, 1, T0 + 2),
        ]

    def test_counts_forget_states_whose_jobs_are_gone(self, store: JobStore) -> None:
        store.ack(ids(enqueue_and_claim(store, "k1")))
        assert store.counts() == []

    def test_backlog_counts_ready_and_leased_jobs_but_not_dead_ones(self, store: JobStore) -> None:
        store.enqueue(new_jobs("k1", "k2", "k3"), T0)
        store.bury(ids(store.claim(A, 2, LEASE_S, T0)[1:]), "r1", "400", T0)
        assert store.backlog() == 2

    def test_backlog_of_one_connection(self, store: JobStore) -> None:
        store.enqueue(new_jobs("a1", "a2"), T0)
        store.enqueue(new_jobs("b1", connection=B), T0)
        assert (store.backlog(A), store.backlog(B), store.backlog("unknown")) == (2, 1, 0)

    def test_connections_lists_connections_with_jobs_in_any_state(self, store: JobStore) -> None:
        store.bury(ids(enqueue_and_claim(store, "b1", connection=B)), "r1", "400", T0)
        store.enqueue(new_jobs("a1"), T0)
        store.ack(ids(enqueue_and_claim(store, "c1", connection="acct-c")))
        assert store.connections() == [A, B]

    def test_failing_jobs_lists_ready_jobs_that_failed_or_were_throttled_by_id(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "clean", "failed", "throttled", "leased")
        store.release(ids(claimed[:1]))
        store.retry(ids(claimed[1:2]), T0 + 60, "503", failed=True)
        store.retry(ids(claimed[2:3]), T0 + 60, "429", failed=False)
        assert keys(store.failing_jobs(A)) == ["failed", "throttled"]

    def test_failing_jobs_are_of_one_connection(self, store: JobStore) -> None:
        store.retry(ids(enqueue_and_claim(store, "b1", connection=B)), T0, "503", failed=True)
        assert store.failing_jobs(A) == []

    def test_a_failing_job_that_is_leased_again_is_not_listed(self, store: JobStore) -> None:
        store.retry(ids(enqueue_and_claim(store, "k1")), T0, "503", failed=True)
        store.claim(A, 1, LEASE_S, T0)
        assert store.failing_jobs(A) == []
