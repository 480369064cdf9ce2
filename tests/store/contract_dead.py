"""Contract, part 3: the dead-letter queue (bury, dead, redrive, purge)."""

from __future__ import annotations

from mparticle_klaviyo.store.base import DeadFilter, JobState, JobStore
from tests.store.contract_base import ContractBase, enqueue_and_claim
from tests.store.helpers import LEASE_S, T0, A, B, ids, keys


def bury_each(store: JobStore) -> dict[str, int]:
    """Bury a1 (reason r1), a2 (r2) on A and b1 (r1) on B, leave a3 live; their ids by key."""
    buried = enqueue_and_claim(store, "a1", "a2", "a3") + enqueue_and_claim(store, "b1", connection=B)
    by_key = {job.key: job.id for job in buried}
    store.bury([by_key["a1"], by_key["b1"]], "r1", "400 one", T0 + 1)
    store.bury([by_key["a2"]], "r2", "400 two", T0 + 1)
    return by_key


class DeadContract(ContractBase):
    """How jobs die, are listed, and come back or go away."""

    def test_bury_moves_jobs_to_dead_with_the_reason_and_detail(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1")
        store.bury(ids(claimed), "invalid_payload", '400 {"errors": []}', T0 + 1)
        [job] = store.dead(DeadFilter())
        assert (job.state, job.dead_reason, job.last_error) == (JobState.DEAD, "invalid_payload", '400 {"errors": []}')

    def test_a_failed_bury_counts_the_final_failure_as_an_attempt(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1")
        for step in (1, 2):
            store.retry(ids(claimed), T0 + step, "503", failed=True)
            claimed = store.claim(A, 1, LEASE_S, T0 + step)
        store.bury(ids(claimed), "retries_exhausted:http_503", "503", T0 + 3, failed=True)
        [job] = store.dead(DeadFilter())
        assert (job.attempts, job.throttles) == (3, 0)

    def test_a_bury_that_is_no_failure_leaves_attempts_alone(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1")
        store.retry(ids(claimed), T0, "503", failed=True)
        store.bury(ids(store.claim(A, 1, LEASE_S, T0)), "unmappable", "bad input", T0)
        assert store.dead(DeadFilter())[0].attempts == 1

    def test_burying_a_dead_job_again_counts_no_attempt(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1")
        store.bury(ids(claimed), "http_400", "400", T0, failed=True)
        store.bury(ids(claimed), "http_400", "400", T0, failed=True)
        assert store.dead(DeadFilter())[0].attempts == 1

    def test_a_dead_job_is_not_claimed(self, store: JobStore) -> None:
        store.bury(ids(enqueue_and_claim(store, "k1")), "r1", "400", T0)
        store.release_expired(T0 + 10 * LEASE_S)
        assert store.claim(A, 10, LEASE_S, T0 + 10 * LEASE_S) == []

    def test_dead_lists_every_dead_job_oldest_first(self, store: JobStore) -> None:
        bury_each(store)
        assert keys(store.dead(DeadFilter())) == ["a1", "a2", "b1"]

    def test_dead_filters_by_connection(self, store: JobStore) -> None:
        bury_each(store)
        assert keys(store.dead(DeadFilter(connection=A))) == ["a1", "a2"]

    def test_dead_filters_by_reason(self, store: JobStore) -> None:
        bury_each(store)
        assert keys(store.dead(DeadFilter(reason="r1"))) == ["a1", "b1"]

    def test_a_reason_filter_matches_whole_colon_separated_parts_of_the_reason(self, store: JobStore) -> None:
        buried = {job.key: job.id for job in enqueue_and_claim(store, "k1", "k2", "k3")}
        store.bury([buried["k1"]], "retries_exhausted:http_503", "503", T0)
        store.bury([buried["k2"]], "max_age:http_503", "503", T0)
        store.bury([buried["k3"]], "http_503x", "503", T0)
        matched = {r: keys(store.dead(DeadFilter(reason=r))) for r in ("http_503", "retries_exhausted", "max_age")}
        assert matched == {"http_503": ["k1", "k2"], "retries_exhausted": ["k1"], "max_age": ["k2"]}
        assert keys(store.dead(DeadFilter(reason="retries_exhausted:http_503"))) == ["k1"]
        assert store.dead(DeadFilter(reason="http_50")) == store.dead(DeadFilter(reason="exhausted")) == []

    def test_redrive_and_purge_match_reasons_by_part_too(self, store: JobStore) -> None:
        buried = {job.key: job.id for job in enqueue_and_claim(store, "k1", "k2")}
        store.bury([buried["k1"]], "retries_exhausted:http_503", "503", T0)
        store.bury([buried["k2"]], "max_age:throttled", "429", T0)
        assert store.redrive(DeadFilter(reason="http_503"), T0) == 1
        assert store.purge(DeadFilter(reason="throttled")) == 1
        assert store.dead(DeadFilter()) == []

    def test_dead_filters_by_ids_and_ignores_live_ones(self, store: JobStore) -> None:
        by_key = bury_each(store)
        assert keys(store.dead(DeadFilter(ids=(by_key["b1"], by_key["a3"])))) == ["b1"]

    def test_dead_combines_filters(self, store: JobStore) -> None:
        bury_each(store)
        assert keys(store.dead(DeadFilter(connection=A, reason="r1"))) == ["a1"]

    def test_an_empty_id_filter_matches_nothing(self, store: JobStore) -> None:
        bury_each(store)
        assert store.dead(DeadFilter(ids=())) == []

    def test_dead_pages_with_limit_and_offset(self, store: JobStore) -> None:
        bury_each(store)
        pages = [keys(store.dead(DeadFilter(), limit=2, offset=offset)) for offset in (0, 2, 4)]
        assert pages == [["a1", "a2"], ["b1"], []]

    def test_burying_a_dead_job_again_keeps_its_first_reason(self, store: JobStore) -> None:
        by_key = bury_each(store)
        store.bury([by_key["a1"]], "r2", "later", T0 + 2)
        assert store.dead(DeadFilter(ids=(by_key["a1"],)))[0].dead_reason == "r1"

    def test_redrive_makes_matching_dead_jobs_ready_and_due_now(self, store: JobStore) -> None:
        bury_each(store)
        assert store.redrive(DeadFilter(reason="r1"), T0 + 50) == 2
        assert keys(store.claim(A, 10, LEASE_S, T0 + 50)) == ["a1"]

    def test_redrive_resets_attempts_throttles_and_the_reason(self, store: JobStore) -> None:
        claimed = enqueue_and_claim(store, "k1")
        store.retry(ids(claimed), T0, "503", failed=True)
        store.retry(ids(store.claim(A, 1, LEASE_S, T0)), T0, "429", failed=False)
        store.bury(ids(claimed), "too_many_attempts", "503", T0)
        store.redrive(DeadFilter(), T0 + 5)
        [job] = store.claim(A, 1, LEASE_S, T0 + 5)
        assert (job.attempts, job.throttles, job.dead_reason, job.run_at) == (0, 0, None, T0 + 5)

    def test_redrive_leaves_unmatched_dead_jobs_dead(self, store: JobStore) -> None:
        bury_each(store)
        store.redrive(DeadFilter(connection=B), T0 + 5)
        assert keys(store.dead(DeadFilter())) == ["a1", "a2"]

    def test_purge_deletes_matching_dead_jobs(self, store: JobStore) -> None:
        bury_each(store)
        assert store.purge(DeadFilter(connection=A)) == 2
        assert keys(store.dead(DeadFilter())) == ["b1"]

    def test_purge_leaves_live_jobs_alone(self, store: JobStore) -> None:
        by_key = bury_each(store)
        store.purge(DeadFilter(ids=(by_key["a3"],)))
        assert store.backlog(A) == 1
