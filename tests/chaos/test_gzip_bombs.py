"""Gzip bombs cost milliseconds and a refusal, never a stalled event loop (issue 8, finding 2)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from tests.chaos.rig import TOKEN, ServeRig, basic, gzip_bomb

BOMBS = 8


async def bombard(rig: ServeRig, path: str, headers: dict[str, str]) -> tuple[list[int | None], list[float]]:
    """Send ``BOMBS`` bombs at once; probe /healthz until they are answered. (statuses, probe times)."""
    body = gzip_bomb(256)
    sent = {"Content-Encoding": "gzip", "Content-Type": "application/json", **headers}

    async def one() -> int | None:
        try:
            return (await rig.post(path, body, sent))[0]
        except aiohttp.ClientError:
            return None  # refused before the body was sent in full: the server closed on us

    bombs = [asyncio.create_task(one()) for _ in range(BOMBS)]
    probes: list[float] = []
    deadline = time.monotonic() + 60
    while not all(bomb.done() for bomb in bombs) and time.monotonic() < deadline:
        status, took = await rig.get("/healthz")
        assert status == 200
        probes.append(took)
        await asyncio.sleep(0.02)
    return list(await asyncio.gather(*bombs)), probes


def test_unauthenticated_bombs_are_refused_unread(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[int | None], list[float]]:
        async with ServeRig(tmp_path) as rig:
            return await bombard(rig, "/firehose", {})

    statuses, probes = asyncio.run(scenario())
    assert set(statuses) <= {401, None}, statuses
    assert max(probes, default=0) < 0.5, probes


def test_authenticated_bombs_are_413_and_the_loop_keeps_answering(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[int | None], list[float]]:
        async with ServeRig(tmp_path) as rig:
            firehose = await bombard(rig, "/firehose", {"Authorization": f"Token {TOKEN}"})
            bulk = await bombard(rig, "/v2/bulkevents", basic())
            return firehose[0] + bulk[0], firehose[1] + bulk[1]

    statuses, probes = asyncio.run(scenario())
    assert set(statuses) <= {413, None} and statuses.count(413) >= BOMBS, statuses
    assert max(probes, default=0) < 0.5, probes
