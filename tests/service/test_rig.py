"""The delivery rig itself: set-up, teardown in order even when the body raises, errors kept."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.service.e2e_helpers import custom_event, run_async, user_batch
from tests.service.rig import DeliveryRig


class BodyError(Exception):
    """The body's own failure, told apart from anything the rig might raise."""


def _note(steps: list[str], name: str, owner: object, method: str, *, fail: bool = False) -> None:
    """Make ``owner.method`` note ``name`` in ``steps`` when called (then fail, with ``fail``).

    An instance attribute shadows the method that the teardown (and ``Delivery.shutdown``) look
    up; the real method still runs, so that whatever it closes is closed.
    """
    real: Callable[..., Awaitable[None]] = getattr(owner, method)

    async def noted(*args: Any) -> None:
        steps.append(name)
        await real(*args)
        if fail:
            raise RuntimeError(f"{name} failed")

    setattr(owner, method, noted)


def _watch_teardown(rig: DeliveryRig, steps: list[str]) -> None:
    _note(steps, "stop delivery", rig.delivery, "shutdown")
    _note(steps, "close client", rig.delivery.client, "close")
    _note(steps, "close emulator", rig.emulator, "close")
    _note(steps, "close store", rig.store, "close")


async def _refused(url: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(f"{url}/_emulator/state") as response:
            await response.read()
    except aiohttp.ClientConnectionError:
        return True
    return False


def test_the_rig_tears_down_in_order_when_the_body_raises_and_the_bodys_error_propagates(tmp_path: Path) -> None:
    steps: list[str] = []
    seen: list[DeliveryRig] = []
    error = BodyError("the body failed")

    async def scenario() -> None:
        with pytest.raises(BodyError) as raised:
            async with DeliveryRig(tmp_path, batches=[user_batch("ada", [custom_event("m1")])]) as rig:
                seen.append(rig)
                _watch_teardown(rig, steps)
                await rig.until_empty()
                raise error
        assert raised.value is error
        assert getattr(raised.value, "__notes__", []) == [], "a teardown that went well adds nothing"
        assert await _refused(seen[0].emulator.url), "the emulator is closed"
        with pytest.raises(RuntimeError):  # its thread is shut down
            await seen[0].store.backlog()

    run_async(scenario())
    assert steps == ["stop delivery", "close client", "close emulator", "close store"]
    rig = seen[0]
    assert rig.delivery.stop.is_set()
    assert rig.emulator.unique_ids() == ["m1"], "what the emulator recorded is still there to assert on"


def test_a_failing_teardown_step_skips_none_of_the_later_ones_and_hides_nothing(tmp_path: Path) -> None:
    steps: list[str] = []

    async def scenario() -> None:
        with pytest.raises(BodyError) as raised:
            async with DeliveryRig(tmp_path) as rig:
                _watch_teardown(rig, steps)
                _note(steps, "close emulator!", rig.emulator, "close", fail=True)
                raise BodyError("the body failed")
        assert str(raised.value) == "the body failed"
        assert raised.value.__notes__ == ["and the rig's teardown failed: RuntimeError('close emulator! failed')"]

    run_async(scenario())
    assert steps == ["stop delivery", "close client", "close emulator!", "close emulator", "close store"]


def test_a_teardown_failure_after_a_body_that_passed_fails_the_test(tmp_path: Path) -> None:
    steps: list[str] = []

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="close store! failed"):
            async with DeliveryRig(tmp_path) as rig:
                _watch_teardown(rig, steps)
                _note(steps, "close store!", rig.store, "close", fail=True)
        with pytest.raises(ExceptionGroup) as raised:
            async with DeliveryRig(tmp_path / "two", dispatcher=False) as rig:
                _note(steps, "close emulator!", rig.emulator, "close", fail=True)
                _note(steps, "close store!", rig.store, "close", fail=True)
        assert [str(e) for e in raised.value.exceptions] == ["close emulator! failed", "close store! failed"]

    (tmp_path / "two").mkdir()
    run_async(scenario())
    assert steps == [
        "stop delivery",
        "close client",
        "close emulator",
        "close store!",
        "close store",
        "close emulator!",
        "close store!",
    ]


def test_a_set_up_that_fails_closes_what_it_had_started(tmp_path: Path) -> None:
    made: list[DeliveryRig] = []

    async def scenario() -> None:
        rig = DeliveryRig(tmp_path, rate_limits="not a table")
        made.append(rig)
        with pytest.raises(ValueError, match="rate_limits"):
            async with rig:
                raise AssertionError("the body of a rig that failed to start ran")
        assert await _refused(rig.emulator.url), "the emulator is closed"
        with pytest.raises(RuntimeError):
            await rig.store.backlog()

    run_async(scenario())
    assert made[0].deliveries == []


def test_a_dispatcher_shut_down_by_the_test_is_not_shut_down_again(tmp_path: Path) -> None:
    steps: list[str] = []

    async def scenario() -> None:
        async with DeliveryRig(tmp_path, batches=[user_batch("ada", [custom_event("m1")])]) as rig:
            _watch_teardown(rig, steps)
            await rig.until_empty()
            await rig.shutdown()
            assert steps == ["stop delivery", "close client"]
            restarted = rig.deliver(start=False)
            assert rig.delivery is restarted
            _note(steps, "close restarted client", restarted.client, "close")

    run_async(scenario())
    # Newest dispatcher first; the first one's shutdown is called again but closes nothing twice.
    assert steps == [
        "stop delivery",
        "close client",
        "close restarted client",
        "stop delivery",
        "close emulator",
        "close store",
    ]
