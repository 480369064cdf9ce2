"""Rule 26: runtime fault injection (5xx, connection reset, delay), scoped and counted."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from mparticle_klaviyo.klaviyo.emulator import RunningEmulator

from .helpers import Req, assert_error, client, config, encode, event_body, exchange, run, send


def _fault(spec: dict[str, Any]) -> Req:
    return Req("POST", "/_emulator/faults", encode(spec))


def _event(unique_id: str = "u") -> Req:
    return client("/client/events", event_body(unique_id=unique_id))


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_an_injected_status_answers_the_next_requests_with_it(status: int) -> None:
    responses, state = exchange(_fault({"status": status, "count": 2}), _event("a"), _event("b"), _event("c"))
    assert [r.status for r in responses[1:]] == [status, status, 202]
    assert_error(responses[1], status, "error")
    assert [e["unique_id"] for e in state["events"]] == ["c"]
    assert state["faults_injected"] == 2


def test_an_injected_fault_without_count_lasts_until_cleared() -> None:
    clear = Req("DELETE", "/_emulator/faults")
    responses, _ = exchange(_fault({"status": 503}), _event("a"), _event("b"), clear, _event("c"))
    assert [r.status for r in responses] == [200, 503, 503, 200, 202]
    assert responses[3].json() == {"rules": []}


def test_a_fault_scoped_to_a_path_spares_other_paths() -> None:
    profile = client("/client/profiles", {"data": {"type": "profile", "attributes": {"email": "jane@example.com"}}})
    responses, _ = exchange(_fault({"status": 502, "path": "/client/events/"}), profile, _event())
    assert [r.status for r in responses[1:]] == [202, 502]


def test_a_fault_with_probability_zero_never_fires() -> None:
    responses, state = exchange(_fault({"status": 500, "probability": 0}), _event("a"), _event("b"))
    assert [r.status for r in responses[1:]] == [202, 202]
    assert state["faults_injected"] == 0


def test_a_fault_with_a_probability_fires_about_that_often() -> None:
    reqs = [_event(str(i)) for i in range(200)]
    responses, state = exchange(_fault({"status": 503, "probability": 0.3}), *reqs, cfg=config(fault_seed=7))
    hits = sum(r.status == 503 for r in responses[1:])
    assert 30 <= hits <= 90
    assert state["faults_injected"] == hits


def test_a_reset_fault_drops_the_connection() -> None:
    async def scenario(running: RunningEmulator, session: aiohttp.ClientSession) -> dict[str, Any]:
        cfg = running.emulator.config
        await send(session, running.url, _fault({"reset": True, "count": 1}), cfg)
        with pytest.raises(aiohttp.ClientError):
            await send(session, running.url, _event("a"), cfg)
        after = await send(session, running.url, _event("b"), cfg)
        assert after.status == 202
        state: dict[str, Any] = (await send(session, running.url, Req("GET", "/_emulator/state"), cfg)).json()
        return state

    state = run(scenario)
    assert [e["unique_id"] for e in state["events"]] == ["b"]
    assert state["faults_injected"] == 1


def test_a_delay_fault_answers_normally_but_late() -> None:
    async def scenario(running: RunningEmulator, session: aiohttp.ClientSession) -> float:
        cfg = running.emulator.config
        await send(session, running.url, _fault({"delay_ms": 150, "count": 1}), cfg)
        started = time.monotonic()
        resp = await send(session, running.url, _event(), cfg)
        assert resp.status == 202
        return time.monotonic() - started

    assert run(scenario) >= 0.14


def test_a_delay_can_precede_an_injected_status() -> None:
    responses, _ = exchange(_fault({"delay_ms": 10, "status": 504, "count": 1}), _event())
    assert responses[1].status == 504


@pytest.mark.parametrize(
    "spec",
    [{"status": 200}, {"count": 3}, {"status": 503, "probability": 2}, {"status": 503, "colour": "red"}, [1]],
)
def test_an_invalid_fault_rule_is_400(spec: Any) -> None:
    responses, _ = exchange(Req("POST", "/_emulator/faults", encode(spec)), Req("GET", "/_emulator/faults"))
    assert responses[0].status == 400
    assert responses[1].json() == {"rules": []}


def test_faulted_requests_are_counted_but_not_rejections() -> None:
    _, state = exchange(_fault({"status": 500, "count": 1}), _event())
    assert state["requests"] == 1
    assert state["rejected"] == []


def test_active_rules_are_listed_with_their_remaining_count() -> None:
    responses, _ = exchange(_fault({"status": 503, "count": 3}), _event(), Req("GET", "/_emulator/faults"))
    assert responses[2].json()["rules"][0]["count"] == 2
