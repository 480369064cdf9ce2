"""The per-profile ordering barrier: one test per invariant of its docstring, then a simulation."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mparticle_klaviyo.delivery.barrier import Barrier

P = "email:ada@example.com"
Q = "email:grace@example.com"


# Invariant 1: a key is blocked exactly while it has a blocker.


def test_a_new_barrier_blocks_nothing() -> None:
    barrier = Barrier()
    assert barrier.may_send(P, 1)
    assert barrier.blocked() == {}
    assert len(barrier) == 0


def test_a_failed_job_makes_it_the_blocker_of_its_key() -> None:
    barrier = Barrier()
    barrier.failed(P, 7)
    assert barrier.blocked() == {P: 7}
    assert barrier.blocker(P) == 7
    assert len(barrier) == 1


def test_a_failure_blocks_only_its_own_key() -> None:
    barrier = Barrier()
    barrier.failed(P, 7)
    assert barrier.may_send(Q, 8)
    assert barrier.blocker(Q) is None


def test_the_earliest_of_several_unresolved_failures_is_the_blocker() -> None:
    barrier = Barrier()
    barrier.failed(P, 9)
    barrier.failed(P, 4)
    barrier.failed(P, 6)
    assert barrier.blocker(P) == 4


def test_every_unresolved_failure_of_a_key_is_listed_in_id_order() -> None:
    barrier = Barrier()
    barrier.failed(P, 5)
    barrier.failed(P, 3)
    barrier.failed(P, 9)
    assert barrier.failing(P) == [3, 5, 9]
    assert barrier.failing(Q) == []
    barrier.done(P, 5)
    assert barrier.failing(P) == [3, 9]


# Invariant 2: while blocked, only jobs up to the blocker may be sent.


def test_a_later_job_of_a_blocked_key_may_not_be_sent() -> None:
    barrier = Barrier()
    barrier.failed(P, 7)
    assert not barrier.may_send(P, 8)


def test_the_blockers_own_retry_may_be_sent() -> None:
    barrier = Barrier()
    barrier.failed(P, 7)
    assert barrier.may_send(P, 7)


def test_an_earlier_job_still_in_flight_may_be_sent() -> None:
    barrier = Barrier()
    barrier.failed(P, 7)
    assert barrier.may_send(P, 3)


# Invariant 3: resolving the blocker unblocks, unless a later failure is still unresolved.


def test_delivering_the_blocker_unblocks_its_key() -> None:
    barrier = Barrier()
    barrier.failed(P, 7)
    barrier.done(P, 7)
    assert barrier.may_send(P, 8)
    assert barrier.blocked() == {}


def test_a_later_unresolved_failure_becomes_the_blocker_when_the_first_is_resolved() -> None:
    barrier = Barrier()
    barrier.failed(P, 5)  # answered first...
    barrier.failed(P, 3)  # ...then an earlier job in flight at the same time failed too
    barrier.done(P, 3)
    assert barrier.blocker(P) == 5
    assert not barrier.may_send(P, 7), "job 5 is still failing: job 7 must wait for it"
    barrier.done(P, 5)
    assert barrier.may_send(P, 7)


def test_done_on_a_job_that_is_not_failing_changes_nothing() -> None:
    barrier = Barrier()
    barrier.failed(P, 7)
    barrier.done(P, 3)
    barrier.done(P, 9)
    barrier.done(Q, 7)
    assert barrier.blocked() == {P: 7}


def test_resolving_a_later_failure_before_the_blocker_keeps_the_blocker() -> None:
    barrier = Barrier()
    barrier.failed(P, 3)
    barrier.failed(P, 5)
    barrier.done(P, 5)
    assert barrier.blocker(P) == 3
    barrier.done(P, 3)
    assert barrier.blocked() == {}


# Invariant 4: a later failure does not move the blocker.


def test_a_failure_after_the_blocker_does_not_move_it() -> None:
    barrier = Barrier()
    barrier.failed(P, 3)
    barrier.failed(P, 8)
    assert barrier.blocker(P) == 3
    assert not barrier.may_send(P, 8)


def test_the_blocker_failing_again_keeps_it_the_blocker() -> None:
    barrier = Barrier()
    barrier.failed(P, 3)
    barrier.failed(P, 3)
    barrier.done(P, 3)
    assert barrier.blocked() == {}


# Invariant 5: jobs without a profile have no order to keep.


def test_jobs_without_a_profile_key_are_never_blocked() -> None:
    barrier = Barrier()
    barrier.failed("", 3)
    assert barrier.may_send("", 4)
    assert len(barrier) == 0


# Simulation: random arrivals, concurrent sends and outcomes over many profiles.


class World:
    """A dispatcher in miniature, with an oracle that knows which jobs are failing."""

    def __init__(self, seed: int, profiles: int) -> None:
        self.rng = random.Random(seed)
        self.profiles = [f"email:user{n}@example.com" for n in range(profiles)]
        self.barrier = Barrier()
        self.next_id = 1
        self.profile_of: dict[int, str] = {}
        self.ready: set[int] = set()  # queued, waiting to be claimed
        self.in_flight: set[int] = set()
        self.failing: set[int] = set()  # the oracle: failed and neither delivered nor dead since
        self.delivered: set[int] = set()
        self.dead: set[int] = set()
        self.sends: list[int] = []

    def arrive(self) -> None:
        job = self.next_id
        self.next_id += 1
        self.profile_of[job] = self.rng.choice(self.profiles)
        self.ready.add(job)

    def claim(self) -> None:
        """Claim ready jobs in id order and send what ``Barrier.admit`` allows, as the dispatcher does."""
        claimed = [job for job in sorted(self.ready) if self.rng.random() < 0.5]  # the rest: not due yet
        admission = self.barrier.admit((self.profile_of[job], job) for job in claimed)
        assert sorted(admission.send + list(admission.held)) == claimed
        sent_now: list[int] = []
        for job in admission.send:
            self.check_nothing_earlier_is_failing(job, sent_now)
            sent_now.append(job)
            self.ready.discard(job)
            self.in_flight.add(job)
            self.sends.append(job)

    def check_nothing_earlier_is_failing(self, job: int, sent_before_in_claim: list[int]) -> None:
        """Every earlier failing job of the profile goes out before it, in the same claim."""
        profile = self.profile_of[job]
        earlier = [
            other
            for other in self.failing
            if other < job and self.profile_of[other] == profile and other not in sent_before_in_claim
        ]
        assert not earlier, f"job {job} sent while earlier job(s) {earlier} of {profile} are failing"

    def answer(self, fail_probability: float) -> None:
        """One in-flight job gets its answer, in any order (requests overtake each other)."""
        if not self.in_flight:
            return
        job = self.rng.choice(sorted(self.in_flight))
        self.in_flight.discard(job)
        profile = self.profile_of[job]
        roll = self.rng.random()
        if roll < fail_probability:
            self.failing.add(job)
            self.barrier.failed(profile, job)
            self.ready.add(job)
            return
        # Delivered, or dead-lettered (retries exhausted, a permanent 4xx): resolved either way.
        (self.dead if roll < fail_probability + 0.05 else self.delivered).add(job)
        self.failing.discard(job)
        self.barrier.done(profile, job)

    def check_blockers_match_the_oracle(self) -> None:
        expected: dict[str, int] = {}
        for job in self.failing:
            profile = self.profile_of[job]
            expected[profile] = min(job, expected.get(profile, job))
        assert self.barrier.blocked() == expected


def simulate(seed: int, profiles: int, arrivals: int) -> World:
    world = World(seed, profiles)
    rng = world.rng
    steps = 0
    while world.next_id <= arrivals or world.ready or world.in_flight:
        steps += 1
        assert steps < 200_000, "the simulation did not settle: something is stuck behind the barrier"
        # Failures are frequent while jobs arrive, then fade out so that everything completes.
        fail = 0.35 if world.next_id <= arrivals else max(0.0, 0.35 - steps / 20_000)
        action = rng.random()
        if action < 0.3 and world.next_id <= arrivals:
            world.arrive()
        elif action < 0.6:
            world.claim()
        else:
            world.answer(fail)
        world.check_blockers_match_the_oracle()
    return world


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), profiles=st.integers(min_value=1, max_value=30))
def test_simulation_never_sends_a_job_while_an_earlier_job_of_its_profile_is_failing(seed: int, profiles: int) -> None:
    world = simulate(seed, profiles, arrivals=300)
    assert world.delivered | world.dead == set(range(1, world.next_id)), "every job is delivered or dead-lettered"
    assert world.failing == set()
    assert world.barrier.blocked() == {}
    assert len(world.barrier) == 0


def test_admit_sends_a_blocked_profiles_consecutive_failed_jobs_with_their_blocker() -> None:
    barrier = Barrier()
    for job in (3, 5, 8):
        barrier.failed(P, job)
    admission = barrier.admit([(P, 3), (Q, 4), (P, 5), (P, 6), (P, 8)])
    # 3 is the blocker, 5 its next failure; 6 never failed, so 8 waits behind it (a gap).
    assert admission.send == [3, 4, 5]
    assert admission.held == {6: 3, 8: 3}


def test_admit_holds_a_failed_job_claimed_without_its_blocker() -> None:
    barrier = Barrier()
    barrier.failed(P, 3)
    barrier.failed(P, 5)
    assert barrier.admit([(P, 5)]) == ([], {5: 3})


def test_simulation_over_many_profiles_completes_every_job() -> None:
    world = simulate(seed=20240601, profiles=200, arrivals=3000)
    assert len(world.delivered | world.dead) == 3000
    assert world.dead, "some jobs were dead-lettered"
    assert len(world.sends) > 3000, "some jobs failed and were sent again"
