"""Planning worker processes: the same plans and refusals as ``plan_body``, and failures kept apart."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from mparticle_klaviyo.config import Connection, load_config
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.server.errors import PayloadTooLargeError
from mparticle_klaviyo.server.plan_pool import PlanningError, PlanPool, auto_workers
from mparticle_klaviyo.server.planning import Limits, Route, plan_body
from tests.service.e2e_helpers import custom_event, run_async, user_batch, wait_until, write_service_config
from tests.service.messages import firehose_events

LIMITS = Limits(max_batches=100, max_batch_bytes=128 * 1024, max_job_bytes=256 * 1024 * 1024)
NOW_MS = time.time() * 1000


def acme(tmp_path: Path) -> Connection:
    """The test service's connection ``acme`` (its keys and Firehose token included)."""
    return load_config(write_service_config(tmp_path, "http://127.0.0.1:1", 8080)).connections["acme"]


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


@asynccontextmanager
async def pool_of(connection: Connection, workers: int = 2, **options: float) -> AsyncIterator[PlanPool]:
    """A started pool for ``connection``, always closed."""
    pool = PlanPool({connection.name: connection}, workers, **options)
    await pool.start()
    try:
        yield pool
    finally:
        await pool.close()


def pids(pool: PlanPool) -> list[int]:
    """The pids of the pool's running workers."""
    return [w.process.pid for w in pool._workers if w.process.returncode is None]


def refusal(call: Callable[[], Any]) -> tuple[type[Exception], str, str]:
    """The exception ``call`` raises: its type, pointer and message."""
    try:
        call()
    except (InputError, PayloadTooLargeError) as error:
        return type(error), error.pointer, error.message
    raise AssertionError("expected a refusal")


def test_auto_means_one_worker_per_core_up_to_four_and_none_on_one_core() -> None:
    assert [auto_workers(n) for n in (1, 2, 3, 4, 6, 64)] == [0, 2, 3, 4, 4, 4]


def test_workers_plan_every_route_as_plan_body_does(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    batches = [user_batch(f"u{n}", [custom_event(f"m{n}a"), custom_event(f"m{n}b")]) for n in range(5)]
    cases = [
        (Route.BULK, body(batches)),
        (Route.EVENTS, body(batches[0])),
        (Route.WEBHOOK, body(batches[:2])),
        (Route.FIREHOSE, body(firehose_events())),
    ]

    async def scenario() -> None:
        async with pool_of(connection) as pool:
            for route, raw in cases:
                planned = await pool.plan(route, raw, connection.name, LIMITS, NOW_MS)
                assert planned == plan_body(route, raw, connection, LIMITS, NOW_MS), route
                assert planned is not None and planned.jobs

    run_async(scenario())


def test_a_refusal_in_a_worker_names_the_same_field_as_in_process(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    good = user_batch("u1", [custom_event("m1")])
    bad_field = body([good, {"events": "nope"}])
    too_many = body([good] * 3)
    small = Limits(max_batches=2, max_batch_bytes=128 * 1024, max_job_bytes=LIMITS.max_job_bytes)
    tiny_budget = Limits(max_batches=100, max_batch_bytes=128 * 1024, max_job_bytes=10)

    async def scenario() -> None:
        async with pool_of(connection) as pool:
            for raw, limits in (
                (bad_field, LIMITS),
                (b'{"events": [', LIMITS),
                (too_many, small),
                (too_many, tiny_budget),
            ):
                expected = refusal(partial(plan_body, Route.BULK, raw, connection, limits, NOW_MS))
                try:
                    await pool.plan(Route.BULK, raw, connection.name, limits, NOW_MS)
                except (InputError, PayloadTooLargeError) as error:
                    assert (type(error), error.pointer, error.message) == expected
                else:
                    raise AssertionError(f"{raw[:20]!r} was planned")

    run_async(scenario())


def test_a_worker_that_dies_fails_its_calls_and_is_replaced(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    raw = body(user_batch("u1", [custom_event("m1")]))

    async def scenario() -> None:
        async with pool_of(connection, workers=1, restart_delay_s=0.05) as pool:
            assert await pool.plan(Route.EVENTS, raw, connection.name, LIMITS, NOW_MS) is not None
            (first,) = pids(pool)
            os.kill(first, signal.SIGSTOP)  # it takes the next call and never answers it
            call = asyncio.create_task(pool.plan(Route.EVENTS, raw, connection.name, LIMITS, NOW_MS))
            await wait_until(lambda: _waiting(pool), 5.0, "the call handed to the worker")
            os.kill(first, signal.SIGKILL)
            with pytest.raises(PlanningError):
                await call
            await wait_until(lambda: _replaced(pool, first), 10.0, "a new worker")
            assert await pool.plan(Route.EVENTS, raw, connection.name, LIMITS, NOW_MS) is not None

    run_async(scenario())


async def _waiting(pool: PlanPool) -> bool:
    return any(w.waiting for w in pool._workers)


async def _replaced(pool: PlanPool, old: int) -> bool:
    return bool(pids(pool)) and old not in pids(pool)


def test_a_worker_that_hangs_is_stopped_after_the_call_timeout(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    raw = body(user_batch("u1", [custom_event("m1")]))

    async def scenario() -> None:
        async with pool_of(connection, workers=1, call_timeout_s=0.5, restart_delay_s=0.05) as pool:
            assert await pool.plan(Route.EVENTS, raw, connection.name, LIMITS, NOW_MS) is not None
            (first,) = pids(pool)
            os.kill(first, signal.SIGSTOP)
            started = time.monotonic()
            with pytest.raises(PlanningError, match="too long"):
                await pool.plan(Route.EVENTS, raw, connection.name, LIMITS, NOW_MS)
            assert time.monotonic() - started < 5.0
            await wait_until(lambda: _replaced(pool, first), 10.0, "a new worker")

    run_async(scenario())


def test_without_workers_the_caller_plans_itself(tmp_path: Path) -> None:
    connection = acme(tmp_path)

    async def scenario() -> None:
        async with pool_of(connection, workers=0) as pool:
            assert pool.running == 0
            assert await pool.plan(Route.EVENTS, body(user_batch("u1", [])), connection.name, LIMITS, NOW_MS) is None

    run_async(scenario())


def test_close_ends_every_worker_and_sigterm_alone_does_not(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    raw = body(user_batch("u1", [custom_event("m1")]))

    async def scenario() -> None:
        pool = PlanPool({connection.name: connection}, 2)
        await pool.start()
        processes = [w.process for w in pool._workers]
        try:
            await pool.plan(Route.EVENTS, raw, connection.name, LIMITS, NOW_MS)
            # systemd signals the whole unit: a worker waits for serve to close its stdin.
            os.kill(processes[0].pid, signal.SIGTERM)
            assert await pool.plan(Route.EVENTS, raw, connection.name, LIMITS, NOW_MS) is not None
            assert pool.running == 2
        finally:
            await pool.close()
        assert all(p.returncode == 0 for p in processes)

    run_async(scenario())


def test_keys_never_reach_a_workers_command_line_or_the_pools_repr(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    settings = connection.settings
    held = (settings.public_api_key, settings.private_api_key, settings.events_api_key, settings.events_api_secret)
    secrets = [s.get_secret_value() for s in held if s is not None]
    assert len(secrets) >= 2

    async def scenario() -> None:
        async with pool_of(connection) as pool:
            for pid in pids(pool):
                command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
                environment = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
                assert not any(s in command or s in environment for s in secrets)
            assert not any(s in repr(pool) for s in secrets)

    run_async(scenario())


def test_workers_run_below_serves_priority(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    raw = body(user_batch("u1", [custom_event("m1")]))

    async def scenario() -> None:
        async with pool_of(connection, workers=1) as pool:
            await pool.plan(Route.EVENTS, raw, connection.name, LIMITS, NOW_MS)  # it has started
            (pid,) = pids(pool)
            nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
            assert nice == os.nice(0) + 5

    run_async(scenario())
