"""Run the real CLI as a subprocess against an emulator served from the test's event loop."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig, RunningEmulator, start_emulator

T = TypeVar("T")


class CliResult:
    """Exit code and output of one CLI run."""

    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.code = code
        self.stdout = stdout
        self.stderr = stderr


async def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
    """``python -m mparticle_klaviyo ARGS`` without blocking the loop that serves the emulator."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mparticle_klaviyo",
        *args,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    return CliResult(process.returncode or 0, stdout.decode(), stderr.decode())


async def emulator_state(emulator: RunningEmulator) -> dict[str, Any]:
    """The emulator's inspection endpoint, over HTTP."""
    async with aiohttp.ClientSession() as session, session.get(f"{emulator.url}/_emulator/state") as response:
        state: dict[str, Any] = await response.json()
        return state


async def post_control(emulator: RunningEmulator, path: str, body: Any) -> None:
    """POST to an emulator control endpoint."""
    async with aiohttp.ClientSession() as session, session.post(f"{emulator.url}{path}", json=body) as response:
        assert response.status < 300, await response.text()


def with_emulator(test: Callable[[RunningEmulator], Awaitable[T]], config: EmulatorConfig | None = None) -> T:
    """Run ``test`` with a fresh emulator on a free loopback port."""

    async def main() -> T:
        emulator = await start_emulator(config)
        try:
            return await test(emulator)
        finally:
            await emulator.close()

    return asyncio.run(main())


def write_config(directory: Path, url: str, **settings: Any) -> Path:
    """A config file with one connection ``e2e`` aimed at ``url``."""
    table = {"public_api_key": "DEMO01", "list_id": "LIST01", "klaviyo_url": url, **settings}
    lines = ["[connections.e2e]"] + [f"{key} = {toml_value(value)}" for key, value in table.items()]
    path = directory / "e2e.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def toml_value(value: Any) -> str:
    """A TOML literal for strings, numbers, lists and (inline) tables."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)
