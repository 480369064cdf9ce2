"""The credentials pause as a state machine on a fake clock: a 401/403 pauses, a probe resumes."""

from __future__ import annotations

import pytest

from mparticle_klaviyo.delivery.clock import FakeClock
from mparticle_klaviyo.delivery.credentials import Change, CredentialOptions, Credentials, State
from mparticle_klaviyo.klaviyo.check import Accepted, Inconclusive, Refusal

BULK = "POST /api/event-bulk-create-jobs"
REVOKED = Refusal(endpoint=BULK, status=401, code="authentication_failed", detail="Incorrect authentication")
NO_SCOPE = Refusal(endpoint=BULK, status=403, code="permission_denied", detail="missing scopes: events:write")
OPTIONS = CredentialOptions(probe_every_s=60.0, retry_probe_s=5.0)


def _credentials(clock: FakeClock) -> tuple[Credentials, list[Change]]:
    changes: list[Change] = []
    return Credentials(clock, OPTIONS, listener=changes.append), changes


def _paused(clock: FakeClock) -> tuple[Credentials, list[Change]]:
    credentials, changes = _credentials(clock)
    assert credentials.refused(REVOKED)
    return credentials, changes


def test_jobs_flow_until_klaviyo_refuses_the_credentials_then_none_is_claimed() -> None:
    credentials, changes = _credentials(FakeClock())
    assert (credentials.state, credentials.allowance(1000), credentials.refusal) == (State.OK, 1000, None)
    assert credentials.refused(REVOKED) is True
    assert (credentials.state, credentials.allowance(1000), credentials.refusal) == (State.PAUSED, 0, REVOKED)
    assert changes == [Change(paused=True, refusal=REVOKED)]


def test_refusals_while_paused_change_nothing_and_are_not_heard_twice() -> None:
    clock = FakeClock()
    credentials, changes = _paused(clock)
    clock.advance(30)
    assert credentials.refused(NO_SCOPE) is False  # a request sent before the pause
    assert credentials.refusal == REVOKED
    assert credentials.probe_in() == pytest.approx(30.0), "the next probe did not move"
    assert len(changes) == 1


def test_the_first_probe_is_due_probe_every_s_after_the_pause_and_only_one_goes() -> None:
    clock = FakeClock()
    credentials, _ = _paused(clock)
    clock.advance(59.9)
    assert credentials.take_probe() is None
    clock.advance(0.1)
    assert credentials.take_probe() == REVOKED
    assert credentials.state is State.PROBING
    assert credentials.take_probe() is None, "a second probe while one is out"
    assert credentials.allowance(10) == 0, "no job is claimed while the probe is out"


def test_an_accepted_probe_resumes_delivery_and_says_for_how_long_it_was_paused() -> None:
    clock = FakeClock()
    credentials, changes = _paused(clock)
    clock.advance(60)
    credentials.take_probe()
    clock.advance(0.5)
    credentials.probed(Accepted(status=400))
    assert (credentials.state, credentials.allowance(7), credentials.refusal) == (State.OK, 7, None)
    assert changes[-1] == Change(paused=False, refusal=REVOKED, paused_s=60.5)


def test_a_refused_probe_waits_a_whole_interval_and_keeps_klaviyos_latest_answer() -> None:
    clock = FakeClock()
    credentials, changes = _paused(clock)
    clock.advance(60)
    credentials.take_probe()
    credentials.probed(NO_SCOPE)  # the key is back, but without its scope
    assert (credentials.state, credentials.refusal) == (State.PAUSED, NO_SCOPE)
    assert credentials.probe_in() == pytest.approx(60.0)
    assert len(changes) == 1, "still the same pause"


def test_a_probe_without_an_answer_is_retried_sooner() -> None:
    clock = FakeClock()
    credentials, _ = _paused(clock)
    clock.advance(60)
    credentials.take_probe()
    credentials.probed(Inconclusive(reason="connection_error"))
    assert (credentials.state, credentials.refusal) == (State.PAUSED, REVOKED)
    assert credentials.probe_in() == pytest.approx(5.0)


def test_an_abandoned_probe_lets_another_go_at_once() -> None:
    clock = FakeClock()
    credentials, _ = _paused(clock)
    clock.advance(60)
    credentials.take_probe()
    credentials.abandoned()
    assert credentials.take_probe() == REVOKED


def test_resume_now_makes_the_next_probe_due_at_once_but_resumes_only_if_it_is_accepted() -> None:
    clock = FakeClock()
    credentials, _ = _paused(clock)
    clock.advance(1)
    assert credentials.resume_now() is True
    assert credentials.allowance(5) == 0, "asking is not resuming"
    assert credentials.take_probe() == REVOKED
    assert credentials.resume_now() is True, "a probe is out: still paused, nothing changes"
    credentials.probed(REVOKED)
    assert credentials.state is State.PAUSED


def test_resume_now_when_not_paused_says_so() -> None:
    credentials, changes = _credentials(FakeClock())
    assert credentials.resume_now() is False
    assert (credentials.state, changes) == (State.OK, [])


def test_a_verdict_without_a_probe_out_changes_nothing() -> None:
    clock = FakeClock()
    credentials, changes = _paused(clock)
    credentials.probed(Accepted(status=202))  # e.g. a job's answer, sent before the pause
    assert credentials.state is State.PAUSED
    fresh, _ = _credentials(clock)
    fresh.probed(REVOKED)
    assert fresh.state is State.OK
    assert len(changes) == 1


def test_a_new_pause_after_a_resume_is_heard_again() -> None:
    clock = FakeClock()
    credentials, changes = _paused(clock)
    credentials.resume_now()
    credentials.take_probe()
    credentials.probed(Accepted(status=400))
    assert credentials.refused(NO_SCOPE) is True
    assert [change.paused for change in changes] == [True, False, True]


@pytest.mark.parametrize(("every", "retry"), [(0.0, 5.0), (60.0, 0.0), (-1.0, 5.0)])
def test_options_must_be_positive(every: float, retry: float) -> None:
    with pytest.raises(ValueError, match="probe_every_s"):
        Credentials(FakeClock(), CredentialOptions(probe_every_s=every, retry_probe_s=retry))
