"""Rich rendering for people: the replay progress bar and summary table, emulator state tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
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
    """A progress bar over jobs (events and consent changes): settled of queued.

    Reading stays a few thousand jobs ahead of delivery, so the total is known (and shown) once
    the input is read; until then the text says how many are queued so far.
    """
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]replay"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(
            "jobs settled · {task.fields[queued]} queued · {task.fields[events]} Klaviyo events delivered"
            " · {task.fields[failed]} failed"
        ),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("replay", total=None, queued=0, events=0, failed=0)

        def refresh() -> None:
            progress.update(
                task,
                completed=stats.settled,
                total=stats.queued_total if stats.input_done else None,
                queued=stats.queued_total,
                events=stats.events_delivered,
                failed=stats.buried,
            )

        yield refresh
        refresh()


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
    retries = f"{stats.retried_jobs} job retries, {stats.throttled} answered 429"
    table.add_row("HTTP requests", str(stats.requests), retries)
    table.add_row("elapsed", f"{stats.elapsed_s:.2f}s", f"rate limiter waited {stats.limiter_wait_s:.2f}s")
    return table


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
