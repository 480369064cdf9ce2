"""Rich rendering for people: the replay progress bar and summary table, emulator state tables."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from mparticle_klaviyo.jobs.plan import SUBSCRIPTION
from mparticle_klaviyo.replay_stats import ACCOUNT_MISMATCH, DUPLICATE_IN_INPUT, ReplayStats

# Drops that need a word of explanation in the summary.
_DROP_DETAILS = {
    # Keyed as serve's store keys them: the event's time, unique_id, metric and profile.
    DUPLICATE_IN_INPUT: "already queued in this replay: sent once, as first read",
    ACCOUNT_MISMATCH: "a Firehose request for another Klaviyo account: not sent with these keys",
}


@contextmanager
def replay_progress(console: Console, stats: ReplayStats) -> Iterator[Callable[[], None]]:
    """A progress bar over jobs (events and consent changes): settled of the total, and an ETA.

    Reading stays a few thousand jobs ahead of delivery, so the total is exact once the input is
    read; until then it is estimated (``~``) from the share of the input's lines read.
    """
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]replay"),
        BarColumn(),
        TextColumn("{task.fields[settled]}/{task.fields[expected]}"),
        TextColumn(
            "jobs settled · {task.fields[queued]} queued · {task.fields[events]} Klaviyo events delivered"
            " · {task.fields[failed]} failed"
        ),
        TimeElapsedColumn(),
        TextColumn("ETA {task.fields[eta]}"),
    )
    started = time.monotonic()
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("replay", total=None, **progress_fields(stats, 0.0))

        def refresh() -> None:
            total, _ = stats.expected_total()
            fields = progress_fields(stats, time.monotonic() - started)
            progress.update(task, completed=stats.settled, total=total, **fields)

        yield refresh
        refresh()


def progress_fields(stats: ReplayStats, elapsed_s: float) -> dict[str, Any]:
    """The progress bar's texts: settled, expected total (``~`` while estimated, ``?`` unknown), ETA."""
    total, estimated = stats.expected_total()
    eta = stats.eta_s(elapsed_s)
    return {
        "settled": f"{stats.settled:,}",
        "expected": "?" if total is None else f"{'~' if estimated else ''}{total:,}",
        "queued": f"{stats.queued_total:,}",
        "events": f"{stats.events_delivered:,}",
        "failed": f"{stats.buried:,}",
        "eta": "?" if eta is None else _clock(eta),
    }


def _clock(seconds: float) -> str:
    """``1:02:03`` (hours:minutes:seconds)."""
    whole = round(seconds)
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def summary_table(stats: ReplayStats) -> Table:
    """Batches, events and their fates: delivered, dropped and failed, each by reason."""
    table = Table(title="Replay summary", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_column("detail", overflow="fold")
    table.add_row("batches read", str(stats.batches), "")
    table.add_row("input errors", str(len(stats.input_errors)), _first_error(stats))
    table.add_row("mParticle events", str(stats.events_in), "")
    for reason, count in sorted(stats.dropped.items()):
        table.add_row(f"[yellow]dropped: {reason}", str(count), _DROP_DETAILS.get(reason, ""))
    for reason, count in sorted(stats.warnings.items()):
        table.add_row(f"[yellow]warning: {reason}", str(count), "")
    queued = f"{stats.queued_events} events, {stats.queued_consents} consent changes"
    table.add_row("jobs queued", str(stats.queued_total), queued)
    per_product = "commerce purchases add one per product"
    table.add_row("[green]Klaviyo events delivered", str(stats.events_delivered), per_product)
    table.add_row("[green]subscriptions delivered", str(stats.subscriptions_delivered), "")
    for kind, count in sorted(stats.consents_delivered.items()):
        if kind != SUBSCRIPTION:
            table.add_row(f"[green]{kind}s delivered", str(count), "")
    for reason, count in sorted(stats.failed.items()):
        table.add_row(f"[red]failed: {reason}", str(count), stats.failure_details.get(reason, ""))
    if stats.stopped:
        table.add_row("[red]stopped early", "", stats.stopped)
    if stats.interrupted:
        table.add_row("[yellow]interrupted (Ctrl-C)", "", _resume_hint(stats))
    elif stats.stopped and stats.checkpoint:
        table.add_row("[yellow]checkpoint", "", _resume_hint(stats))
    retries = f"{stats.retried_jobs} job retries, {stats.throttled} answered 429"
    table.add_row("HTTP requests", str(stats.requests), retries)
    table.add_row("elapsed", f"{stats.elapsed_s:.2f}s", f"rate limiter waited {stats.limiter_wait_s:.2f}s")
    return table


def _resume_hint(stats: ReplayStats) -> str:
    """Where the checkpoint is and how to continue; or that there is none."""
    if stats.checkpoint is None:
        return "no checkpoint was left: a new replay starts over"
    left = stats.queued_total - stats.settled
    where = f"checkpoint {stats.checkpoint}"
    return f"{left:,} job(s) not settled; {where}: continue with `replay --resume` and the same files"


def _first_error(stats: ReplayStats) -> str:
    if not stats.input_errors:
        return ""
    location, error = stats.input_errors[0]
    more = f" (+{len(stats.input_errors) - 1} more)" if len(stats.input_errors) > 1 else ""
    return f"{location}: {error}{more}"


def emulator_tables(state: dict[str, Any]) -> list[Table]:
    """What the emulator recorded: events, subscriptions and counters."""
    events = Table(title="Klaviyo emulator: recorded events", header_style="bold")
    for column in ("metric", "profile", "unique_id", "time", "value"):
        events.add_column(column, overflow="fold")
    for event in state.get("events", []):
        profile = event.get("profile") or {}
        who = profile.get("email") or profile.get("phone_number") or str(profile)
        value = event.get("value")
        events.add_row(
            str(event.get("metric")),
            str(who),
            str(event.get("unique_id")),
            str(event.get("time") or ""),
            "" if value is None else f"{value} {event.get('value_currency') or ''}".strip(),
        )
    subscriptions = Table(title="Klaviyo emulator: subscriptions", header_style="bold")
    for column in ("list", "channels", "email", "phone"):
        subscriptions.add_column(column)
    for sub in state.get("subscriptions", []):
        subscriptions.add_row(
            str(sub.get("list_id")),
            ", ".join(sub.get("channels", [])),
            str(sub.get("email") or ""),
            str(sub.get("phone_number") or ""),
        )
    counters = Table(title="Klaviyo emulator: counters", header_style="bold")
    counters.add_column("counter")
    counters.add_column("value", justify="right")
    for key in ("requests", "duplicates_dropped", "throttled", "faults_injected"):
        counters.add_row(key, str(state.get(key, 0)))
    counters.add_row("rejected", str(len(state.get("rejected", []))))
    return [events, subscriptions, counters]
