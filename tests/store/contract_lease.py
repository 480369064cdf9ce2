"""Contract, part 2: claim leases jobs exclusively; ack, retry, release and expiry end a lease."""

from __future__ import annotations

from mparticle_klaviyo.store.base import DeadFilter, JobState, JobStore
from tests.store.contract_base import ContractBase, enqueue_and_claim
from tests.store.helpers import LEASE_S, T0, A, B, ids, keys, new_job, new_jobs


class LeaseContract(ContractBase):
    """How jobs are leased and how a lease ends."""

    def test_claim_returns_due_jobs_oldest_first(self, store: JobStore) -> None:
        store.enqueue(new_jobs("k1", "k2"), T0)
        store.enqueue(new_jobs("k3"), T0 + 1)
        assert keys(store.claim(A, 10, LEASE_S, T0 + 2)) == ["k1", "k2", "k3"]

    def test_claim_leases_jobs_until_now_plus_the_lease_time(self, store: JobStore) -> None:
        store.enqueue(new_jobs("k1"), T0)
        [job] = store.claim(A, 1, LEASE_S, T0 + 5)
        assert (job.state, job.lease_until) == (JobState.LEASED, T0 + 5 + LEASE_S)

    def test_claim_takes_only_jobs_of_the_asked_connection(self, store: JobStore) -> None:
        store.enqueue([new_job("a1", A), new_job("b1", B), new_job("a2", A)], T0)
        assert keys(store.claim(B, 10, LEASE_S, T0)) == ["b1"]

    def test_claim_skips_jobs_that_are_not_due_yet(self, store: JobStore) -> None:
        store.enqueue([new_job("later", run_at=T0 + 60), new_job("now", run_at=T0)], T0)
        assert keys(store.claim(A, 10, LEASE_S, T0)) == ["now"]

    def test_a_job_is_claimable_once_its_run_at_arrives(self, store: JobStore) -> None:
        store.enqueue([new_job("later", run_at=T0 + 60)], T0)
        assert keys(store.claim(A, 10, LEASE_S, T0 + 60)) == ["later"]

    def test_claim_returns_at_most_limit_jobs(self, store: JobStore) -> None:
        store.enqueue(new_jobs("k1", "k2", "k3"), T0)
        assert keys(store.claim(A, 2, LEASE_S, T0)) == ["k1", "k2"]

    def test_claim_with_a_zero_limit_returns_nothing(self, store: JobStore) -> None:
        store.enqueue(new_jobs("k1"), T0)
        assert store.claim(A, 0, LEASE_S, T0) == []

    def test_a_leased_job_is_not_claimed_again(self, store: JobStore) -> None:
        enqueue_and_claim(store, "k1")
        assert store.claim(A, 10, LEASE_S, T0 + 1) == []

    def test_an_expired_lease_still_blocks_claims_until_release_expired(self, store: JobStore) -> None:
        enqueue_and_claim(store, "k1")
        assert store.claim(A, 10, LEASE_S, T0 + LEASE_S + 1) == []

    def test_release_expired_returns_jobs_whose_lease_ended(self, store: JobStore) -> None:
        enqueue_and_claim(store, "k1")
        enqueue_and_claim(store, "k2", now=T0 + 10)
        assert store.release_expired(T0 + LEASE_S) == 1
        assert keys(store.claim(A, 10, LEASE_S, T0 + LEASE_S)) == ["k1"]

    def test_release_expired_leaves_unexpired_leases_alone(self, store: JobStore) -> None:
        enqueue_and_claim(store, "k1")
        assert store.release_expired(T0 + LEASE_S - 1) == 0
        assert store.claim(A, 10, LEASE_S, T0 + LEASE_S - 1) == []

    def test_a_job_released_after_expiry_is_ready_with_its_counters_unchanged(self, store: JobStore) -> None:
        enqueue_and_claim(store, "k1")
        store.release_expired(T0 + LEASE_S)
        [job] = store.claim(A, 1, LEASE_S, T0 + LEASE_S)
        assert (job.attempts, job.throttles) == (0, 0)

    def test_ack_deletes_jobs(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1", "k2", "k3")
        store.ack(ids(claimed[:2]))
        assert store.backlog() == 1

    def test_ack_of_unknown_ids_changes_nothing(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1")
        store.ack([claimed[0].id + 1000])
        assert store.backlog() == 1

    def test_ack_leaves_dead_jobs_alone(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1")
        store.bury(ids(claimed), "invalid", "400", T0)
        store.ack(ids(claimed))
        assert ids(store.dead(DeadFilter())) == ids(claimed)

    def test_a_failed_retry_counts_an_attempt_and_records_the_error(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1")
        store.retry(ids(claimed), T0 + 10, "503 Service Unavailable", failed=True)
        [job] = store.claim(A, 1, LEASE_S, T0 + 10)
        assert (job.attempts, job.throttles, job.last_error) == (1, 0, "503 Service Unavailable")

    def test_a_throttled_retry_counts_a_throttle_and_not_an_attempt(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1")
        store.retry(ids(claimed), T0 + 10, "429 Too Many Requests", failed=False)
        [job] = store.claim(A, 1, LEASE_S, T0 + 10)
        assert (job.attempts, job.throttles, job.last_error) == (0, 1, "429 Too Many Requests")

    def test_a_retried_job_is_ready_but_not_due_before_its_new_run_at(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1")
        store.retry(ids(claimed), T0 + 10, "timeout", failed=True)
        assert store.claim(A, 1, LEASE_S, T0 + 9) == []
        assert store.failing_jobs(A)[0].run_at == T0 + 10

    def test_retries_accumulate(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1")
        for step, failed in enumerate([True, False, True], start=1):
            store.retry(ids(claimed), T0 + step, "timeout", failed=failed)
            claimed = store.claim(A, 1, LEASE_S, T0 + step)
        assert (claimed[0].attempts, claimed[0].throttles) == (2, 1)

    def test_release_returns_leased_jobs_to_ready_as_they_were(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1")
        store.release(ids(claimed))
        [job] = store.claim(A, 1, LEASE_S, T0)
        assert (job.id, job.attempts, job.throttles, job.run_at) == (claimed[0].id, 0, 0, 0.0)

    def test_release_leaves_dead_jobs_alone(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1")
        store.bury(ids(claimed), "invalid", "400", T0)
        store.release(ids(claimed))
        assert store.backlog() == 0
