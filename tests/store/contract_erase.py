"""Contract, part 6: an erasure drops the profile's queued and dead jobs that came before it."""

from __future__ import annotations

import msgspec

from mparticle_klaviyo.store.base import DeadFilter, JobStore, NewJob
from tests.store.contract_base import ContractBase
from tests.store.helpers import LEASE_S, T0, A, B, ids, keys, new_job

ADA = "email:ada@example.com"


def of(profile: str, key: str, connection: str = A, kind: str = "event") -> NewJob:
    return msgspec.structs.replace(new_job(key, connection), profile_key=profile, kind=kind)


class EraseContract(ContractBase):
    """``erase``: what goes, what stays."""

    def test_erase_deletes_earlier_ready_and_dead_jobs_of_the_profiles_and_returns_them(self, store: JobStore) -> None:
        store.enqueue([of(ADA, "dead")], T0)
        [dead] = store.claim(A, 1, LEASE_S, T0)
        store.bury([dead.id], "http_400", "400", T0)
        batch = [of(ADA, "ready"), of("phone:+15555550100", "by-phone"), of(ADA, "erasure", kind="erasure")]
        store.enqueue([*batch, of(ADA, "later")], T0)
        claimed = store.claim(A, 10, LEASE_S, T0)
        erasure_id = next(job.id for job in claimed if job.key == "erasure")
        store.release([job.id for job in claimed if job.key != "erasure"])
        gone = store.erase(A, [ADA, "phone:+15555550100"], erasure_id, "erasure")
        assert keys(gone) == ["dead", "ready", "by-phone"]
        assert store.dead(DeadFilter()) == []
        assert store.erase(A, [ADA], erasure_id, "erasure") == []

    def test_erase_leaves_leased_jobs_later_jobs_other_profiles_connections_and_erasures(self, store: JobStore) -> None:
        store.enqueue([of(ADA, "leased"), of(ADA, "old-erasure", kind="erasure"), of("email:bob@x.io", "bob")], T0)
        store.enqueue([of(ADA, "on-b", connection=B)], T0)
        [leased] = store.claim(A, 1, LEASE_S, T0)
        store.enqueue([of(ADA, "after")], T0)
        assert store.erase(A, [ADA], leased.id + 2, "erasure") == []
        left = store.claim(A, 10, LEASE_S, T0)
        assert keys(left) == ["old-erasure", "bob", "after"]
        assert keys(store.claim(B, 10, LEASE_S, T0)) == ["on-b"]
        assert store.backlog(A) == 4
        assert ids([leased]) == [leased.id]
