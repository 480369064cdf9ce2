"""The account's circuit as a state machine on a fake clock: when it opens, how it probes, when it closes."""

from __future__ import annotations

import asyncio
import random

import pytest

from mparticle_klaviyo.delivery.circuit import Admission, Change, Circuit, CircuitOptions, Paused, State
from mparticle_klaviyo.delivery.clock import FakeClock
from mparticle_klaviyo.delivery.lane import Lane
from mparticle_klaviyo.delivery.report import Tally
from mparticle_klaviyo.klaviyo.classify import Outcome, Retryable
from mparticle_klaviyo.klaviyo.limits import RateLimit
from tests.delivery.helpers import client_for, event_request, run
from tests.delivery.scripted_server import ScriptedServer, Step

QUICK = CircuitOptions(threshold=5, window_s=30.0, min_span_s=1.0, base_s=1.0, cap_s=60.0)


def _circuit(clock: FakeClock, options: CircuitOptions = QUICK, seed: int = 1) -> tuple[Circuit, list[Change]]:
    changes: list[Change] = []
    return Circuit(clock, options, rng=random.Random(seed), listener=changes.append), changes


def _fail(circuit: Circuit, clock: FakeClock, sources: list[int], every_s: float = 0.3) -> list[bool]:
    """One failure per source, ``every_s`` apart; whether each was charged to its request."""
    charged = []
    for source in sources:
        clock.advance(every_s)
        charged.append(circuit.failed(source, "connection_error", probe=False))
    return charged


def _open(circuit: Circuit, clock: FakeClock) -> None:
    _fail(circuit, clock, [1, 2, 3, 4, 5])
    assert _in(circuit, State.OPEN)


def _in(circuit: Circuit, state: State) -> bool:
    """``circuit.state is state``, without mypy narrowing the property for the rest of the test."""
    return circuit.state is state


def _probe(circuit: Circuit, clock: FakeClock) -> None:
    """Wait for the next probe and take it."""
    clock.advance(circuit.retry_in())
    assert circuit.admit() is Admission.PROBE


def test_a_new_circuit_is_closed_and_lets_everything_through() -> None:
    circuit, changes = _circuit(FakeClock())
    assert _in(circuit, State.CLOSED)
    assert [circuit.admit() for _ in range(3)] == [Admission.SEND] * 3
    assert circuit.allowance(1000) == 1000
    assert circuit.retry_in() == 0.0 and circuit.opened_at is None and changes == []


def test_failures_of_different_requests_that_persist_open_it_and_the_one_that_does_is_not_charged() -> None:
    clock = FakeClock()
    circuit, changes = _circuit(clock)
    assert _fail(circuit, clock, [1, 2, 3, 4, 5]) == [True, True, True, True, False]
    assert _in(circuit, State.OPEN)
    assert circuit.opened_at == clock.now()
    assert changes == [Change(opened=True, reason="connection_error")]
    assert circuit.openings == 1


def test_one_request_failing_again_and_again_never_opens_it() -> None:
    clock = FakeClock()
    circuit, changes = _circuit(clock)
    assert all(_fail(circuit, clock, [7] * 50))
    assert _in(circuit, State.CLOSED) and changes == []


def test_any_answer_from_klaviyo_between_failures_keeps_it_closed() -> None:
    clock = FakeClock()
    circuit, _ = _circuit(clock)
    for _ in range(5):
        _fail(circuit, clock, [1, 2, 3, 4])
        circuit.succeeded(probe=False)  # a 2xx, a 429 or a 4xx: Klaviyo is there
    assert _in(circuit, State.CLOSED)


def test_failures_spread_wider_than_the_window_keep_it_closed() -> None:
    clock = FakeClock()
    circuit, _ = _circuit(clock)
    assert all(_fail(circuit, clock, list(range(20)), every_s=10.0))  # at most 3 within any 30 s
    assert _in(circuit, State.CLOSED)


def test_a_burst_of_failures_shorter_than_min_span_keeps_it_closed() -> None:
    clock = FakeClock()
    circuit, _ = _circuit(clock)
    assert all(_fail(circuit, clock, list(range(30)), every_s=0.01))  # 30 failures in 0.3 s
    assert _in(circuit, State.CLOSED)
    clock.advance(1.0)
    assert circuit.failed(99, "http_503", probe=False) is False, "still failing a second later: an outage"
    assert _in(circuit, State.OPEN)


def test_while_open_nothing_is_admitted_until_the_wait_then_exactly_one_probe() -> None:
    clock = FakeClock()
    circuit, _ = _circuit(clock)
    _open(circuit, clock)
    wait = circuit.retry_in()
    assert 0.5 <= wait <= 1.0, "base_s with jitter down to half"
    assert circuit.admit() is Admission.REFUSE and circuit.allowance(1000) == 0
    clock.advance(wait)
    assert circuit.peek() is Admission.PROBE and circuit.allowance(1000) == 1
    assert circuit.admit() is Admission.PROBE
    assert _in(circuit, State.PROBING)
    assert [circuit.admit() for _ in range(5)] == [Admission.REFUSE] * 5, "one probe at a time"
    assert circuit.allowance(1000) == 0


def test_a_probe_answer_closes_it_and_tells_how_long_klaviyo_was_unreachable() -> None:
    clock = FakeClock()
    circuit, changes = _circuit(clock)
    _open(circuit, clock)
    opened = clock.now()
    _probe(circuit, clock)
    clock.advance(0.2)
    circuit.succeeded(probe=True)
    assert _in(circuit, State.CLOSED) and circuit.opened_at is None
    assert changes[-1] == Change(opened=False, reason="connection_error", down_s=changes[-1].down_s)
    assert changes[-1].down_s == pytest.approx(clock.now() - opened)
    assert circuit.admit() is Admission.SEND


def test_failed_probes_reopen_it_for_waits_doubling_up_to_the_cap() -> None:
    clock = FakeClock()
    circuit, changes = _circuit(clock)
    _open(circuit, clock)
    waits = []
    for _ in range(10):
        _probe(circuit, clock)
        assert circuit.failed(42, "connection_error", probe=True) is False, "a probe's failure is not charged"
        assert _in(circuit, State.OPEN)
        waits.append(circuit.retry_in())
    for n, wait in enumerate(waits, start=1):
        ceiling = min(60.0, 2.0**n)
        assert ceiling / 2 <= wait <= ceiling
    assert len(changes) == 1, "reopening is the same outage: no new change"


def test_a_failed_probes_own_request_waits_one_interval_more_than_the_others() -> None:
    clock = FakeClock()
    circuit, _ = _circuit(clock)
    _open(circuit, clock)
    _probe(circuit, clock)
    circuit.failed(42, "connection_error", probe=True)
    wait = circuit.retry_in()
    assert circuit.paused() == Paused(retry_in_s=wait, reason="connection_error")
    assert circuit.paused(probe=True).retry_in_s == pytest.approx(2 * wait)


def test_results_of_requests_sent_before_it_opened_do_not_change_it() -> None:
    clock = FakeClock()
    circuit, changes = _circuit(clock)
    _open(circuit, clock)
    assert circuit.failed(8, "http_503", probe=False) is False, "part of the outage: not charged"
    circuit.succeeded(probe=False)
    assert _in(circuit, State.OPEN) and len(changes) == 1
    _probe(circuit, clock)
    circuit.succeeded(probe=False)
    assert _in(circuit, State.PROBING), "only the probe's answer closes it"


def test_an_abandoned_probe_lets_another_go_at_once() -> None:
    clock = FakeClock()
    circuit, _ = _circuit(clock)
    _open(circuit, clock)
    _probe(circuit, clock)
    circuit.abandoned(probe=True)
    assert _in(circuit, State.OPEN) and circuit.admit() is Admission.PROBE


def test_after_closing_it_opens_again_on_a_new_outage_starting_from_the_base_wait() -> None:
    clock = FakeClock()
    circuit, changes = _circuit(clock)
    _open(circuit, clock)
    for _ in range(4):
        _probe(circuit, clock)
        circuit.failed(1, "connection_error", probe=True)
    _probe(circuit, clock)
    circuit.succeeded(probe=True)
    assert _fail(circuit, clock, [1, 2, 3, 4]) == [True] * 4, "the old failures were forgotten"
    _fail(circuit, clock, [5])
    assert circuit.openings == 2 and [c.opened for c in changes] == [True, False, True]
    assert 0.5 <= circuit.retry_in() <= 1.0


@pytest.mark.parametrize(
    "options",
    [
        CircuitOptions(threshold=1),
        CircuitOptions(min_span_s=30.0, window_s=30.0),
        CircuitOptions(base_s=0.0),
        CircuitOptions(base_s=10.0, cap_s=5.0),
    ],
)
def test_nonsense_options_are_refused(options: CircuitOptions) -> None:
    with pytest.raises(ValueError):
        Circuit(FakeClock(), options)


# ----------------------------------------------------------------------------- through a lane


ROOMY = RateLimit(100, 6000)


def _lane(clock: FakeClock, options: CircuitOptions = QUICK, limit: RateLimit = ROOMY) -> Lane:
    return Lane(limit, clock, circuit=Circuit(clock, options, rng=random.Random(1)))


def test_a_lane_sends_nothing_while_its_circuit_is_open_and_pauses_the_request_instead() -> None:
    clock = FakeClock(start=0.0)
    lane = _lane(clock)
    _open(lane.circuit, clock)

    async def scenario() -> tuple[Outcome | Paused, int]:
        async with ScriptedServer() as server, client_for(server.url) as client:
            outcome = await lane.try_send(client, event_request(), Tally(), source=1)
            return outcome, len(server.received)

    outcome, received = run(scenario())
    assert outcome == Paused(retry_in_s=lane.circuit.retry_in(), reason="connection_error")
    assert received == 0


def test_a_lane_returns_an_isolated_failure_as_it_is_so_that_it_counts() -> None:
    clock = FakeClock(start=0.0)
    lane = _lane(clock)

    async def scenario() -> Outcome | Paused:
        async with ScriptedServer([Step(status=503)]) as server, client_for(server.url) as client:
            return await lane.try_send(client, event_request(), Tally(), source=1)

    outcome = run(scenario())
    assert isinstance(outcome, Retryable) and outcome.status == 503
    assert _in(lane.circuit, State.CLOSED)


def test_a_lane_pauses_the_failure_that_opens_the_circuit_and_a_failed_probe() -> None:
    clock = FakeClock(start=0.0)
    lane = _lane(clock, CircuitOptions(threshold=2, min_span_s=0.0))

    async def scenario() -> list[Outcome | Paused]:
        async with ScriptedServer(default=Step(status=503)) as server, client_for(server.url) as client:
            first = await lane.try_send(client, event_request(1), Tally(), source=1)
            opening = await lane.try_send(client, event_request(2), Tally(), source=2)
            clock.advance(lane.circuit.retry_in())
            probe = await lane.try_send(client, event_request(3), Tally(), source=3)
            return [first, opening, probe]

    first, opening, probe = run(scenario())
    assert isinstance(first, Retryable), "before it opened: an isolated failure, charged"
    assert isinstance(opening, Paused) and isinstance(probe, Paused)
    assert probe.retry_in_s == pytest.approx(2 * lane.circuit.retry_in())
    assert _in(lane.circuit, State.OPEN)


def test_a_request_queued_for_a_slot_when_the_circuit_opens_is_not_sent() -> None:
    clock = FakeClock(start=0.0)
    # The next token is 3 s away, the first probe 10 s or more after the circuit opens.
    lane = _lane(clock, CircuitOptions(base_s=20.0), limit=RateLimit(5, 20))
    lane.limiter.try_acquire()

    async def scenario() -> tuple[Outcome | Paused, int]:
        async with ScriptedServer() as server, client_for(server.url) as client:
            sending = asyncio.create_task(lane.try_send(client, event_request(), Tally(), source=1))
            await asyncio.sleep(0)  # past the first look at the circuit, now waiting for a token
            _open(lane.circuit, clock)  # as failures of other requests would
            return await sending, len(server.received)

    outcome, received = run(scenario())
    assert isinstance(outcome, Paused)
    assert received == 0
    assert lane.concurrency.in_flight == 0, "its slot was given back"
