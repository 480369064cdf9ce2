"""``replay`` at a terminal: the tier warning, the checkpoint, the progress bar, Ctrl-C and the summary."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from rich.console import Console

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.replay import ReplayOptions, replay
from mparticle_klaviyo.replay_checkpoint import Checkpoint, CheckpointError, location
from mparticle_klaviyo.replay_stats import ReplayStats
from mparticle_klaviyo.report_view import replay_progress, summary_table

INTERRUPTED = 130  # what a shell reports for a process ended by SIGINT


def default_limits_warning(connection: Connection) -> str | None:
    """A warning when ``connection`` paces at Klaviyo's default (largest, XL) tier limits; else None."""
    if connection.settings.rate_limits:
        return None
    return (
        f"warning: connection {connection.name!r} sets no rate_limits, so replay paces at Klaviyo's largest (XL)"
        " tier limits; a smaller account answers 429s (waited out, but the run is slower and each costs a"
        f" request): set [connections.{connection.name}.rate_limits] to your account's limits"
    )


def run_replay(
    paths: list[Path], connection: Connection, options: ReplayOptions, resume: bool, folder: Path | None = None
) -> int:
    """Replay ``paths`` with a checkpoint (in ``folder``, else beside them), print the summary; the exit code."""
    warning = default_limits_warning(connection)
    if warning is not None:
        typer.echo(warning, err=True)
    stats = ReplayStats()
    checkpoint = Checkpoint(folder.resolve() if folder is not None else location(paths))
    try:
        interrupted = _run(paths, connection, options, stats, checkpoint, resume)
    except CheckpointError as error:
        if resume or checkpoint.exists():
            typer.echo(f"error: {error}", err=True)
            return 2
        # An input folder we may not write to: the replay runs, only Ctrl-C cannot be resumed.
        typer.echo(f"warning: {error}; a Ctrl-C will leave nothing to resume", err=True)
        stats = ReplayStats()
        interrupted = _run(paths, connection, options, stats, None, False)
    Console().print(summary_table(stats))
    if interrupted:
        return INTERRUPTED
    return 1 if stats.failed_total or stats.input_errors else 0


def _run(
    paths: list[Path],
    connection: Connection,
    options: ReplayOptions,
    stats: ReplayStats,
    checkpoint: Checkpoint | None,
    resume: bool,
) -> bool:
    """One replay under a progress bar; whether Ctrl-C interrupted it (its checkpoint is saved then)."""
    with replay_progress(Console(stderr=True), stats) as refresh:
        try:
            asyncio.run(replay(paths, connection, options, stats, refresh, checkpoint, resume))
        except KeyboardInterrupt:
            return True
    return False
