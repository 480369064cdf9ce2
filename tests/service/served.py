"""The real ``mparticle-klaviyo serve`` as a subprocess, driven from the test's event loop.

The config listens on port 0; the URL is read from the ``serving`` log line. Output is drained
all along (a full pipe would stall the service) and kept for the test to read after SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig, RunningEmulator, start_emulator

T = TypeVar("T")


def toml_value(value: Any) -> str:
    """A TOML literal: strings, numbers and booleans as JSON writes them, tables inline."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def write_config(directory: Path, connections: dict[str, dict[str, Any]], **service: Any) -> Path:
    """A config file: ``[service]`` on 127.0.0.1:0 with its store in ``directory``, then the connections."""
    settings = {"host": "127.0.0.1", "port": 0, "store": str(directory / "jobs.sqlite3"), **service}
    lines = ["[service]", *(f"{k} = {toml_value(v)}" for k, v in settings.items())]
    for name, table in connections.items():
        lines += ["", f"[connections.{name}]", *(f"{k} = {toml_value(v)}" for k, v in table.items())]
    path = directory / "serve.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class Served:
    """A running ``serve`` process: its URL, and everything it printed so far."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.url = ""
        self.stdout = bytearray()
        self.stderr = bytearray()
        self._drains: list[asyncio.Task[None]] = []

    @classmethod
    async def start(cls, config: Path, timeout: float = 30.0) -> Served:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "mparticle_klaviyo",
            "serve",
            "--config",
            str(config),
            cwd=config.parent,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        served = cls(process)
        assert process.stdout is not None and process.stderr is not None
        served._drains = [
            asyncio.create_task(served._drain(process.stdout, served.stdout)),
            asyncio.create_task(served._drain(process.stderr, served.stderr)),
        ]
        deadline = time.monotonic() + timeout
        while not served.url:
            if process.returncode is not None or time.monotonic() > deadline:
                await served.stop()
                raise AssertionError(f"serve did not start: {served.stderr.decode(errors='replace')}")
            await asyncio.sleep(0.05)
        return served

    async def _drain(self, stream: asyncio.StreamReader, into: bytearray) -> None:
        while line := await stream.readline():
            into += line
            if not self.url and b'"serving"' in line:
                self.url = json.loads(line)["url"]

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines on stderr so far."""
        return [json.loads(line) for line in self.stderr.decode().splitlines() if line.startswith("{")]

    async def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, then wait for the exit and the rest of the output; the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        await asyncio.gather(*self._drains, return_exceptions=True)
        return code


async def emulator_state(emulator: RunningEmulator) -> dict[str, Any]:
    """``GET /_emulator/state``."""
    async with aiohttp.ClientSession() as session, session.get(f"{emulator.url}/_emulator/state") as response:
        state: dict[str, Any] = await response.json()
        return state


async def wait_for_events(emulator: RunningEmulator, count: int, timeout: float = 30.0) -> dict[str, Any]:
    """Poll the emulator until it recorded ``count`` events; its state then (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        state = await emulator_state(emulator)
        if state["events_recorded"] >= count or time.monotonic() > deadline:
            return state
        await asyncio.sleep(0.1)


def with_emulator(test: Callable[[RunningEmulator], Awaitable[T]], config: EmulatorConfig | None = None) -> T:
    """Run ``test`` in a fresh event loop with an emulator on a free loopback port."""

    async def main() -> T:
        emulator = await start_emulator(config)
        try:
            return await test(emulator)
        finally:
            await emulator.close()

    return asyncio.run(main())
