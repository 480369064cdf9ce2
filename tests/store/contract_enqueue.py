"""Contract, part 1: enqueue is atomic and deduplicated, and ids follow arrival."""

from __future__ import annotations

from contextlib import closing

import pytest

from mparticle_klaviyo.store.base import EnqueueResult, Job, JobState, JobStore, NewJob
from tests.store.contract_base import ContractBase, enqueue_and_claim
from tests.store.helpers import LEASE_S, T0, A, B, ids, keys, new_job, new_jobs


class EnqueueContract(ContractBase):
    """How enqueue stores jobs, skips repeats and numbers jobs."""

    def test_enqueue_stores_every_new_job_and_counts_them(self, store: JobStore) -> None:
        assert store.enqueue(new_jobs("k1", "k2", "k3"), T0) == EnqueueResult(stored=3, duplicates=0)
        assert store.backlog() == 3

    def test_a_stored_job_keeps_what_was_enqueued(self, store: JobStore) -> None:
        job = NewJob(connection=A, key="k1", profile_key="p@x.io", kind="profile", payload=b"\x00\xff", run_at=T0 - 5)
        store.enqueue([job], T0)
        [claimed] = store.claim(A, 1, LEASE_S, T0)
        assert claimed == Job(
            id=claimed.id,
            connection=A,
            key="k1",
            profile_key="p@x.io",
            kind="profile",
            payload=b"\x00\xff",
            state=JobState.LEASED,
            attempts=0,
            throttles=0,
            created_at=T0,
            run_at=T0 - 5,
            lease_until=T0 + LEASE_S,
        )

    def test_a_key_enqueued_again_later_is_a_duplicate(self, store: JobStore) -> None:
        store.enqueue(new_jobs("k1", "k2"), T0)
        assert store.enqueue(new_jobs("k2", "k3"), T0 + 1) == EnqueueResult(stored=1, duplicates=1)
        assert store.backlog() == 3

    def test_a_key_repeated_within_one_call_is_stored_once_as_its_first_occurrence(self, store: JobStore) -> None:
        batch = [new_job("k1", payload=b"first"), new_job("k2"), new_job("k1", payload=b"second")]
        assert store.enqueue(batch, T0) == EnqueueResult(stored=2, duplicates=1)
        assert [job.payload for job in store.claim(A, 10, LEASE_S, T0) if job.key == "k1"] == [b"first"]

    def test_the_same_key_on_another_connection_is_a_different_job(self, store: JobStore) -> None:
        store.enqueue(new_jobs("k1", connection=A), T0)
        assert store.enqueue(new_jobs("k1", connection=B), T0) == EnqueueResult(stored=1, duplicates=0)

    def test_a_delivered_key_is_still_remembered(self, store: JobStore) -> None:
        store.ack(ids(enqueue_and_claim(store, "k1")))
        assert store.enqueue(new_jobs("k1"), T0 + 60) == EnqueueResult(stored=0, duplicates=1)
        assert store.backlog() == 0

    def test_forget_before_drops_keys_first_seen_before_the_cutoff(self, store: JobStore) -> None:
        store.enqueue(new_jobs("old1", "old2"), T0)
        store.enqueue(new_jobs("new"), T0 + 10)
        assert store.forget_before(T0 + 10) == 2
        assert store.enqueue(new_jobs("old1", "old2", "new"), T0 + 11) == EnqueueResult(stored=2, duplicates=1)

    def test_a_forgotten_key_is_enqueued_again_even_after_delivery(self, store: JobStore) -> None:
        store.ack(ids(enqueue_and_claim(store, "k1")))
        store.forget_before(T0 + 1)
        assert store.enqueue(new_jobs("k1"), T0 + 2) == EnqueueResult(stored=1, duplicates=0)

    def test_a_key_is_remembered_within_the_dedup_window(self) -> None:
        with closing(self.open_store(dedup_window_s=60)) as store:
            store.enqueue(new_jobs("k1"), T0)
            assert store.enqueue(new_jobs("k1"), T0 + 59) == EnqueueResult(stored=0, duplicates=1)

    def test_a_key_exactly_one_window_old_is_still_remembered(self) -> None:
        with closing(self.open_store(dedup_window_s=60)) as store:
            store.enqueue(new_jobs("k1"), T0)
            assert store.enqueue(new_jobs("k1"), T0 + 60) == EnqueueResult(stored=0, duplicates=1)

    def test_a_key_older_than_the_dedup_window_is_enqueued_again(self) -> None:
        with closing(self.open_store(dedup_window_s=60)) as store:
            store.enqueue(new_jobs("k1"), T0)
            assert store.enqueue(new_jobs("k1"), T0 + 61) == EnqueueResult(stored=1, duplicates=0)

    def test_a_failed_enqueue_stores_nothing(self, store: JobStore) -> None:
        invalid = NewJob(connection=A, key="bad", profile_key="p", kind="event", payload=None)  # type: ignore[arg-type]
        with pytest.raises(self.invalid_job_error):
            store.enqueue([new_job("k1"), invalid, new_job("k2")], T0)
        assert store.counts() == []

    def test_a_failed_enqueue_remembers_no_key(self, store: JobStore) -> None:
        invalid = NewJob(connection=A, key="bad", profile_key="p", kind="event", payload=None)  # type: ignore[arg-type]
        with pytest.raises(self.invalid_job_error):
            store.enqueue([new_job("k1"), invalid], T0)
        assert store.enqueue(new_jobs("k1"), T0 + 1) == EnqueueResult(stored=1, duplicates=0)

    def test_enqueue_of_no_jobs_stores_nothing(self, store: JobStore) -> None:
        assert store.enqueue([], T0) == EnqueueResult(stored=0, duplicates=0)
        assert store.counts() == []

    def test_new_jobs_are_ready(self, store: JobStore) -> None:
        store.enqueue(new_jobs("k1"), T0)
        assert [count.state for count in store.counts()] == [JobState.READY]

    def test_ids_grow_with_enqueue_order(self, store: JobStore) -> None:
        store.enqueue(new_jobs("k3", "k1"), T0)
        store.enqueue([new_job("k2", B), new_job("k0", A)], T0 + 1)
        claimed = store.claim(A, 10, LEASE_S, T0 + 1) + store.claim(B, 10, LEASE_S, T0 + 1)
        assert keys(sorted(claimed, key=lambda job: job.id)) == ["k3", "k1", "k2", "k0"]

    def test_ids_are_never_reused_after_deletes(self, store: JobStore) -> None:
        first = enqueue_and_claim(store, "k1", "k2")
        store.ack(ids(first))
        [later] = enqueue_and_claim(store, "k3", now=T0 + 1)
        assert later.id > max(ids(first))

    def test_enqueue_of_more_jobs_than_one_statement_holds_keeps_them_all_in_order(self, store: JobStore) -> None:
        many = [f"k{n:04d}" for n in range(1000)]
        assert store.enqueue(new_jobs(*many), T0) == EnqueueResult(stored=1000, duplicates=0)
        assert keys(store.claim(A, 2000, LEASE_S, T0)) == many


class EnqueueManyContract(ContractBase):
    """``enqueue_many``: several calls in one transaction, answered as if enqueued one by one."""

    def test_each_call_gets_its_own_result(self, store: JobStore) -> None:
        results = store.enqueue_many([new_jobs("k1", "k2"), new_jobs("k3")], T0)
        assert results == [EnqueueResult(stored=2, duplicates=0), EnqueueResult(stored=1, duplicates=0)]
        assert store.backlog() == 3

    def test_a_key_of_an_earlier_call_is_a_duplicate_in_a_later_one(self, store: JobStore) -> None:
        first = [new_job("k1", payload=b"first")]
        results = store.enqueue_many([first, [new_job("k1", payload=b"second"), new_job("k2")]], T0)
        assert results == [EnqueueResult(stored=1, duplicates=0), EnqueueResult(stored=1, duplicates=1)]
        assert [job.payload for job in store.claim(A, 10, LEASE_S, T0) if job.key == "k1"] == [b"first"]

    def test_remembered_keys_are_duplicates_in_every_call(self, store: JobStore) -> None:
        store.enqueue(new_jobs("k1"), T0)
        results = store.enqueue_many([new_jobs("k1"), new_jobs("k1", "k2")], T0 + 1)
        assert results == [EnqueueResult(stored=0, duplicates=1), EnqueueResult(stored=1, duplicates=1)]

    def test_ids_follow_the_order_of_calls_and_of_jobs_within_them(self, store: JobStore) -> None:
        store.enqueue_many([new_jobs("k3", "k1"), [new_job("k2", B), new_job("k0", A)]], T0)
        claimed = store.claim(A, 10, LEASE_S, T0) + store.claim(B, 10, LEASE_S, T0)
        assert keys(sorted(claimed, key=lambda job: job.id)) == ["k3", "k1", "k2", "k0"]

    def test_one_failing_call_stores_nothing_of_any_call(self, store: JobStore) -> None:
        invalid = NewJob(connection=A, key="bad", profile_key="p", kind="event", payload=None)  # type: ignore[arg-type]
        with pytest.raises(self.invalid_job_error):
            store.enqueue_many([new_jobs("k1"), [invalid], new_jobs("k2")], T0)
        assert store.counts() == []
        assert store.enqueue(new_jobs("k1", "k2"), T0 + 1) == EnqueueResult(stored=2, duplicates=0)

    def test_empty_calls_get_empty_results(self, store: JobStore) -> None:
        assert store.enqueue_many([[], new_jobs("k1"), []], T0) == [
            EnqueueResult(stored=0, duplicates=0),
            EnqueueResult(stored=1, duplicates=0),
            EnqueueResult(stored=0, duplicates=0),
        ]
        assert store.enqueue_many([], T0) == []
