"""``make demo``: replay bundled example batches into the built-in Klaviyo emulator and show the result.

Runs the emulator in-process on a free port, replays ``examples/`` twice (the second time
shows that deterministic ``unique_id``s make a replay safe: Klaviyo records nothing twice),
and prints what the emulator recorded. No Klaviyo account or network needed.
"""

from __future__ import annotations

import asyncio
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

import aiohttp
from rich.console import Console

from mparticle_klaviyo.config import DEFAULT_CONFIG_FILE, Connection, ConnectionSettings, load_config
from mparticle_klaviyo.klaviyo.emulator import start_emulator
from mparticle_klaviyo.replay import ReplayOptions, ReplayStats, replay
from mparticle_klaviyo.report_view import emulator_tables, replay_progress, summary_table

# Used when the demo runs outside the repository (no mparticle-klaviyo.toml at hand).
_FALLBACK_TABLE: dict[str, Any] = {
    "public_api_key": "DEMO01",
    "list_id": "LIST01",
    "default_phone_region": "US",
    "consent_mapping": {"email_marketing": "email", "sms_marketing": "sms"},
    "property_mapping": {"profile_photo_url": "$image"},
}


def example_files() -> list[Path]:
    """The bundled example inputs: a batch, Webhook JSON lines, a Firehose request, rejects."""
    folder = Path(str(files("mparticle_klaviyo") / "examples"))
    return sorted(p for p in folder.iterdir() if p.suffix in {".json", ".jsonl"})


def demo_connection(url: str) -> Connection:
    """The ``demo`` connection of ./mparticle-klaviyo.toml if it has one, else a built-in one, aimed at ``url``."""
    path = Path(DEFAULT_CONFIG_FILE)
    if _has_demo_connection(path):
        return load_config(path).connection("demo").with_overrides({"klaviyo_url": url})
    table = {**_FALLBACK_TABLE, "klaviyo_url": url}
    return Connection("demo", ConnectionSettings.model_validate(table), table)


def _has_demo_connection(path: Path) -> bool:
    """Whether ``path`` is a config with a ``demo`` connection, like the repository's.

    Elsewhere the file may be a user's own (e.g. from ``init``): the demo must not need it.
    """
    try:
        with path.open("rb") as handle:
            connections = tomllib.load(handle).get("connections")
    except (OSError, tomllib.TOMLDecodeError):
        return False
    return isinstance(connections, dict) and "demo" in connections


async def _replay_once(console: Console, paths: list[Path], connection: Connection) -> ReplayStats:
    stats = ReplayStats()
    with replay_progress(console, stats) as refresh:
        await replay(paths, connection, ReplayOptions(), stats, on_progress=refresh)
    console.print(summary_table(stats))
    return stats


async def _state(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/_emulator/state") as response:
        state: dict[str, Any] = await response.json()
        return state


async def run_demo(console: Console) -> int:
    """The whole demo; returns the process exit code."""
    emulator = await start_emulator()
    try:
        paths = example_files()
        connection = demo_connection(emulator.url)
        console.rule("[bold]mparticle-klaviyo demo")
        console.print(f"Klaviyo emulator listening on {emulator.url}")
        console.print("Replaying: " + ", ".join(p.name for p in paths))
        first = await _replay_once(console, paths, connection)
        console.rule("[bold]Replaying the same files again")
        second = await _replay_once(console, paths, connection)
        state = await _state(emulator.url)
        for table in emulator_tables(state):
            console.print(table)
        recorded = len(state.get("events", []))
        console.print(
            f"[bold]{first.events_delivered} events delivered, then {second.events_delivered} again on replay; "
            f"the emulator recorded {recorded} and dropped {state.get('duplicates_dropped', 0)} duplicates "
            "(same unique_id)."
        )
        console.print("Input errors and drops above are deliberate: see examples/not_forwarded.jsonl.")
        ok = recorded == first.events_delivered and not first.failed_total and not second.failed_total
        return 0 if ok else 1
    finally:
        await emulator.close()


def main() -> None:
    """Entry point of ``python -m mparticle_klaviyo.demo``."""
    raise SystemExit(asyncio.run(run_demo(Console())))


if __name__ == "__main__":
    main()
