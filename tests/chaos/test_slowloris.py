"""Slow senders hold nothing: credentials come first, bodies have deadlines (issue 8, finding 1)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.chaos.rig import WEBHOOK, ServeRig, basic, json_body, request_head, trickle, user_batch

TRICKLERS = 40
FIREHOSE_EVENT = json_body({"type": "event_processing_request", "id": "slow", "events": [], "pad": "x" * 900})


async def served_while_trickling(rig: ServeRig, path: str, headers: dict[str, str]) -> list[float]:
    """Start the tricklers on ``path``, then time authenticated requests while they trickle."""
    stop = asyncio.Event()
    head = request_head(path, len(FIREHOSE_EVENT), {"Content-Type": "application/json", **headers})
    slow = [asyncio.create_task(trickle(rig.address, head, FIREHOSE_EVENT, 1.0, stop)) for _ in range(TRICKLERS)]
    await asyncio.sleep(1.5)  # every trickler is past its head and into its body
    took: list[float] = []
    try:
        for n in range(6):
            inputs = [("/v2/events", basic()), ("/webhook/chaos", {"Authorization": WEBHOOK})]
            for where, auth in inputs:
                status, seconds = await asyncio.wait_for(rig.post(where, json_body(user_batch(n)), auth), 10)
                assert status == 202
                took.append(seconds)
    finally:
        stop.set()
        await asyncio.gather(*slow)
    return took


def test_unauthenticated_trickles_to_firehose_do_not_delay_authenticated_senders(tmp_path: Path) -> None:
    async def scenario() -> list[float]:
        async with ServeRig(tmp_path) as rig:
            return await served_while_trickling(rig, "/firehose", {})

    took = asyncio.run(scenario())
    assert max(took) < 2.0, took


def test_authenticated_trickles_are_cut_off_and_do_not_delay_other_senders(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[float], list[bytes]]:
        async with ServeRig(tmp_path, body_idle_timeout_s=3.0) as rig:
            took = await served_while_trickling(rig, "/v2/bulkevents", basic())
            stop = asyncio.Event()
            head = request_head("/v2/events", 1000, {"Content-Type": "application/json", **basic()})
            answer = await asyncio.wait_for(trickle(rig.address, head, b"{" + b" " * 999, 1.0, stop), 20)
            return took, [answer]

    took, answers = asyncio.run(scenario())
    assert max(took) < 2.0, took
    # Past the 5 s grace its rate (1 byte/s) is under the minimum: 408, connection closed.
    assert answers[0].startswith(b"HTTP/1.1 408"), answers
