from __future__ import annotations

import asyncio
from email.utils import formatdate

import pytest

from mparticle_klaviyo.delivery.clock import FakeClock
from mparticle_klaviyo.delivery.gate import RetryAfterGate
from mparticle_klaviyo.klaviyo.retry_after import parse_retry_after
from tests.delivery.helpers import run

NOW = 1_700_000_000.0


def test_retry_after_in_integer_seconds_is_parsed() -> None:
    assert parse_retry_after("3", NOW) == 3.0


def test_retry_after_as_an_imf_fixdate_is_seconds_from_now() -> None:
    assert parse_retry_after(formatdate(NOW + 30, usegmt=True), NOW) == pytest.approx(30.0)


def test_retry_after_as_an_rfc_850_date_is_parsed() -> None:
    assert parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", 784111777.0 - 7.0) == pytest.approx(7.0)


def test_retry_after_as_an_asctime_date_is_read_as_gmt() -> None:
    assert parse_retry_after("Sun Nov  6 08:49:37 1994", 784111777.0 - 5.0) == pytest.approx(5.0)


def test_retry_after_in_the_past_means_no_wait() -> None:
    assert parse_retry_after(formatdate(NOW - 60, usegmt=True), NOW) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "-1", "1e3", "nan"])
def test_missing_or_malformed_retry_after_is_none(value: str | None) -> None:
    assert parse_retry_after(value, NOW) is None


def test_a_new_gate_is_open() -> None:
    gate = RetryAfterGate(FakeClock())
    assert gate.is_open()
    assert run(gate.wait_open()) == 0.0


def test_close_for_keeps_the_gate_closed_until_the_deadline() -> None:
    clock = FakeClock(start=0.0)
    gate = RetryAfterGate(clock)
    gate.close_for(2.0)
    clock.advance(1.9)
    assert not gate.is_open()
    clock.advance(0.1)
    assert gate.is_open()


def test_close_for_never_shortens_an_existing_closure() -> None:
    clock = FakeClock(start=0.0)
    gate = RetryAfterGate(clock)
    gate.close_for(5.0)
    gate.close_for(1.0)
    assert gate.blocked_until == 5.0


def test_wait_open_returns_when_the_gate_opens() -> None:
    clock = FakeClock(start=0.0)
    gate = RetryAfterGate(clock)
    gate.close_for(3.0)
    assert run(gate.wait_open()) == pytest.approx(3.0)
    assert clock.now() == pytest.approx(3.0)


def test_wait_open_keeps_waiting_when_the_gate_is_closed_again_meanwhile() -> None:
    clock = FakeClock(start=0.0)
    gate = RetryAfterGate(clock)
    gate.close_for(1.0)

    async def extend_then_wait() -> float:
        waiter = asyncio.create_task(gate.wait_open())
        await asyncio.sleep(0)
        gate.close_for(4.0)
        return await waiter

    run(extend_then_wait())
    assert clock.now() >= 4.0
