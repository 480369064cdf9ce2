"""Service commands: ``serve``, ``status``, ``check``, ``resume`` and ``dlq list|show|redrive|purge``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec
import typer
from prometheus_client.metrics_core import Metric
from rich.console import Console
from rich.table import Table

from mparticle_klaviyo.cli_options import ConfigOption, fail_config
from mparticle_klaviyo.config import DEFAULT_CONFIG_FILE, Config, Connection, load_config
from mparticle_klaviyo.delivery.dead_letters import preview, redrive_logged
from mparticle_klaviyo.delivery.lane import Transport
from mparticle_klaviyo.delivery.units import now_ms
from mparticle_klaviyo.errors import ConfigError
from mparticle_klaviyo.jobs.plan import decode_payload
from mparticle_klaviyo.store.base import DeadFilter, Job, JobState, StateCount
from mparticle_klaviyo.store.errors import StoreError
from mparticle_klaviyo.store.sqlite import SqliteJobStore

# Merged into the main command line by ``cli.main`` (this module does not import ``cli``).
service_app = typer.Typer()

dlq = typer.Typer(help="Inspect and repair dead-lettered jobs.", no_args_is_help=True)
service_app.add_typer(dlq, name="dlq")

ConnectionFilter = Annotated[str | None, typer.Option("--connection", help="Only this connection.")]
ReasonFilter = Annotated[
    str | None,
    typer.Option("--reason", help="Only reasons with this code or part, e.g. http_400, http_503, max_age."),
]
# Dead jobs read at a time by ``redrive --dry-run``: memory stays flat however many match.
_PREVIEW_PAGE = 500
IdsFilter = Annotated[list[int] | None, typer.Option("--id", help="Only these job ids (repeatable).")]
T = TypeVar("T")


def _config(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as error:
        raise fail_config(error) from None


def _store(config: Config) -> SqliteJobStore:
    path = Path(config.service.store)
    if not path.exists():
        typer.echo(f"error: no job store at {path} (has `serve` run with this config?)", err=True)
        raise typer.Exit(code=2)
    return SqliteJobStore(path, dedup_window_s=config.service.dedup_window_s)


@service_app.command("serve")
def serve_command(config: ConfigOption = Path(DEFAULT_CONFIG_FILE)) -> None:
    """Run the service: HTTP ingest (Firehose, Events API, Webhook) and delivery to Klaviyo.

    Stops gracefully on SIGTERM/SIGINT. Logs are JSON lines on stderr.

    One serve per store file: a second one on the same store exits with code 2.
    """
    from mparticle_klaviyo.observe.logs import configure_logging
    from mparticle_klaviyo.service.runner import serve

    loaded = _config(config)
    configure_logging(loaded.service.log_level)
    try:
        asyncio.run(serve(loaded))
    except StoreError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    except OSError as error:
        # The store's directory missing or unwritable, the port taken: say which, no traceback.
        typer.echo(f"error: cannot start serving: {error}", err=True)
        raise typer.Exit(code=2) from None


@service_app.command("status")
def status_command(
    config: ConfigOption = Path(DEFAULT_CONFIG_FILE),
    sample: Annotated[float, typer.Option(min=0, help="Seconds between two /metrics reads for rates (0: none).")] = 1.0,
) -> None:
    """Backlog per connection and state, the oldest job's age, outages and rates from the running service."""
    loaded = _config(config)
    store = _store(loaded)
    try:
        counts = store.counts()
    finally:
        store.close()
    console = Console()
    console.print(_backlog_table(counts))
    for line in _outages(_metrics_url(loaded)) + _paused(_metrics_url(loaded)):
        console.print(line, markup=False, highlight=False)
    if sample > 0:
        console.print(_rates_table(loaded, sample))


def _backlog_table(counts: list[StateCount]) -> Table:
    table = Table(title="Job store", header_style="bold")
    for column in ("connection", "state", "jobs", "oldest job age"):
        table.add_column(column, justify="right" if column in ("jobs", "oldest job age") else "left")
    now = time.time()
    for count in sorted(counts, key=lambda c: (c.connection, c.state)):
        age = "" if count.oldest_created_at is None else f"{now - count.oldest_created_at:,.0f}s"
        table.add_row(count.connection, count.state.name.lower(), f"{count.count:,}", age)
    if not counts:
        table.add_row("(empty)", "", "0", "")
    return table


def _rates_table(config: Config, seconds: float) -> Table | str:
    """Per-second rates from two reads of the service's /metrics, ``seconds`` apart."""
    url = _metrics_url(config)
    try:
        first = _read_counters(url)
        time.sleep(seconds)
        second = _read_counters(url)
    except OSError:
        return f"rates: the service is not reachable at {url}"
    table = Table(title=f"Rates over {seconds:g}s (from {url})", header_style="bold")
    table.add_column("metric")
    table.add_column("connection")
    table.add_column("per second", justify="right")
    for (name, connection), value in sorted(second.items()):
        table.add_row(name, connection, f"{(value - first.get((name, connection), 0.0)) / seconds:,.1f}")
    return table


_RATE_METRICS = {
    "mpk_events_received": "events received",
    "mpk_events_accepted": "events queued",
    "mpk_jobs_delivered": "jobs delivered",
    "mpk_jobs_retried": "jobs retried",
    "mpk_jobs_dead_lettered": "jobs dead-lettered",
    "mpk_klaviyo_429": "429s from Klaviyo",
}


def _metrics_url(config: Config) -> str:
    return f"http://{config.service.host}:{config.service.port}/metrics"


def _scrape(url: str) -> list[Metric]:
    """The metric families of the running service's /metrics (OSError when it is not there)."""
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(url, timeout=5) as response:
        return list(text_string_to_metric_families(response.read().decode()))


def _outages(url: str) -> list[str]:
    """One line per connection whose circuit is open: ``<connection>: Klaviyo unreachable since <time>``."""
    try:
        families = _scrape(url)
    except OSError:
        return []  # no service, no outage to tell; the rates table says it is not reachable
    now = time.time()
    return [
        f"{sample.labels.get('connection', '')}: Klaviyo unreachable since "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(sample.value))} ({now - sample.value:,.0f}s)"
        for family in families
        if family.name == "mpk_klaviyo_unreachable_since_seconds"
        for sample in family.samples
        if sample.value > 0
    ]


def _paused(url: str) -> list[str]:
    """One line per connection whose delivery a 401/403 pauses (``mpk_credentials_refused_since_seconds``)."""
    try:
        families = _scrape(url)
    except OSError:
        return []
    now, lines = time.time(), []
    for family in families:
        if family.name != "mpk_credentials_refused_since_seconds":
            continue
        for sample in family.samples:
            said = " ".join(sample.labels.get(label, "") for label in ("status", "code"))
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(sample.value))
            lines.append(
                f"{sample.labels.get('connection', '')}: delivery paused: Klaviyo answered {said} on "
                f"{sample.labels.get('endpoint', '')} since {since} ({now - sample.value:,.0f}s)"
            )
    return lines


def _read_counters(url: str) -> dict[tuple[str, str], float]:
    """Counter totals by (metric, connection) from a Prometheus text exposition."""
    totals: dict[tuple[str, str], float] = {}
    for family in _scrape(url):
        label = _RATE_METRICS.get(family.name)
        if label is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = (label, sample.labels.get("connection", ""))
                totals[key] = totals.get(key, 0.0) + sample.value
    return totals


@dlq.command("list")
def dlq_list(
    config: ConfigOption = Path(DEFAULT_CONFIG_FILE),
    connection: ConnectionFilter = None,
    reason: ReasonFilter = None,
    limit: Annotated[int, typer.Option(min=1, help="Most rows to show.")] = 50,
) -> None:
    """Dead-lettered jobs, oldest first, with their reason and Klaviyo's answer."""
    store = _store(_config(config))
    try:
        jobs = store.dead(DeadFilter(connection=connection, reason=reason), limit)
    finally:
        store.close()
    if not jobs:
        typer.echo(_no_match(DeadFilter(connection=connection, reason=reason)))
        return
    table = Table(title="Dead letters", header_style="bold")
    for column in ("id", "connection", "kind", "reason", "attempts", "detail"):
        table.add_column(column, overflow="fold")
    for job in jobs:
        table.add_row(
            str(job.id), job.connection, job.kind, job.dead_reason or "", str(job.attempts), job.last_error or ""
        )
    Console().print(table)


@dlq.command("show")
def dlq_show(
    job_id: Annotated[int, typer.Argument(help="Job id from `dlq list`.")],
    config: ConfigOption = Path(DEFAULT_CONFIG_FILE),
) -> None:
    """One dead job: its reason, Klaviyo's answer, and the stored mParticle input."""
    store = _store(_config(config))
    try:
        found = store.dead(DeadFilter(ids=(job_id,)), 1)
    finally:
        store.close()
    if not found:
        typer.echo(f"error: no dead job {job_id}", err=True)
        raise typer.Exit(code=1)
    typer.echo(msgspec.json.format(msgspec.json.encode(_job_view(found[0])), indent=2).decode())


def _job_view(job: Job) -> dict[str, object]:
    try:
        stored: object = msgspec.to_builtins(msgspec.structs.replace(decode_payload(job.payload), settings=None))
    except msgspec.DecodeError as error:
        # "unmappable" dead letters are exactly the ones whose input may not decode: say so.
        stored = {"undecodable": str(error), "bytes": len(job.payload)}
    return {
        "id": job.id,
        "connection": job.connection,
        "kind": job.kind,
        "key": job.key,
        "state": JobState(job.state).name.lower(),
        "reason": job.dead_reason,
        "detail": job.last_error,
        "attempts": job.attempts,
        "throttles": job.throttles,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.created_at)),
        "input": stored,
    }


def _no_match(where: DeadFilter) -> str:
    """What an empty result says: the filter, as it was typed."""
    words = [f"--connection {where.connection}" if where.connection is not None else ""]
    words.append(f"--reason {where.reason}" if where.reason is not None else "")
    words += [f"--id {job_id}" for job_id in where.ids or ()]
    typed = " ".join(word for word in words if word)
    return f"no dead letters match {typed}" if typed else "no dead letters match: there are none"


@dlq.command("redrive")
def dlq_redrive(
    config: ConfigOption = Path(DEFAULT_CONFIG_FILE),
    connection: ConnectionFilter = None,
    reason: ReasonFilter = None,
    ids: IdsFilter = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be sent today; change nothing.")] = False,
) -> None:
    """Queue dead jobs again; delivery maps their stored input with today's code and settings."""
    loaded = _config(config)
    where = DeadFilter(connection=connection, reason=reason, ids=tuple(ids) if ids else None)
    store = _store(loaded)
    try:
        if dry_run:
            _preview_redrive(store, where, loaded)
            return
        from mparticle_klaviyo.observe.logs import configure_logging

        configure_logging(loaded.service.log_level)  # the redrive's log line, as JSON on stderr
        count = redrive_logged(store, where, time.time())
    finally:
        store.close()
    typer.echo(f"redrove {count} job(s)" if count else _no_match(where))


def _preview_redrive(store: SqliteJobStore, where: DeadFilter, config: Config) -> None:
    """Per matching dead job: its id, connection and reason, and what today's code would send."""
    stamp, count = now_ms(), 0
    while page := store.dead(where, _PREVIEW_PAGE, count):
        for job in page:
            shown = preview(job, config.connections.get(job.connection), stamp)
            typer.echo(f"{job.id} {job.connection} {job.dead_reason} -> {shown}")
        count += len(page)
    typer.echo(f"dry run: would redrive {count} job(s); nothing changed" if count else _no_match(where))


@dlq.command("purge")
def dlq_purge(
    config: ConfigOption = Path(DEFAULT_CONFIG_FILE),
    connection: ConnectionFilter = None,
    reason: ReasonFilter = None,
    ids: IdsFilter = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete.")] = False,
) -> None:
    """Delete dead jobs for good (asks for --yes)."""
    if not yes:
        typer.echo("error: purge deletes jobs for good; add --yes", err=True)
        raise typer.Exit(code=2)
    store = _store(_config(config))
    try:
        where = DeadFilter(connection=connection, reason=reason, ids=tuple(ids) if ids else None)
        count = store.purge(where)
    finally:
        store.close()
    typer.echo(f"purged {count} job(s)" if count else _no_match(where))


@service_app.command("check")
def check_command(
    config: ConfigOption = Path(DEFAULT_CONFIG_FILE),
    connection: ConnectionFilter = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for each answer from Klaviyo.")] = 10.0,
) -> None:
    """Ask Klaviyo whether it accepts each connection's keys, for each endpoint it will use.

    A private key is proved with an empty request per endpoint (Klaviyo answers 400 without
    recording anything; 401: key refused; 403: a scope missing, named); a public key is checked
    for its format. Never prints a key. Exit 0 all accepted, 1 one refused or unanswered, 2 config error.
    """
    from mparticle_klaviyo.service.check import check_all

    loaded = _config(config)
    try:
        chosen = {connection: loaded.connection(connection)} if connection else loaded.connections
    except ConfigError as error:
        raise fail_config(error) from None
    findings = asyncio.run(_with_clients(chosen, timeout, check_all))
    for finding in findings:
        typer.echo(finding.line())
    if any(finding.ok is not True for finding in findings):
        raise typer.Exit(code=1)


async def _with_clients(
    connections: Mapping[str, Connection],
    timeout_s: float,
    check: Callable[[Mapping[str, Connection], Mapping[str, Transport]], Awaitable[T]],
) -> T:
    """``check(connections, clients)`` with a Klaviyo client per connection, closed afterwards."""
    from mparticle_klaviyo.delivery.clients import client_for

    clients = {name: client_for(c, pool_size=4, timeout_s=timeout_s) for name, c in connections.items()}
    try:
        return await check(connections, clients)
    finally:
        for client in clients.values():
            await client.close()


@service_app.command("resume")
def resume_command(
    connection: Annotated[str, typer.Argument(help="The connection ([connections.NAME]) to resume.")],
    config: ConfigOption = Path(DEFAULT_CONFIG_FILE),
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for the probe's verdict.")] = 15.0,
) -> None:
    """Resume delivery that a 401/403 paused, once the key is fixed: the running serve probes Klaviyo now.

    Delivery resumes only if Klaviyo accepts the probe. The request reaches serve as a file in
    `<store>.resume/`. Exit 0 resumed or not paused, 1 still paused or serve not answering, 2 config error.
    """
    from mparticle_klaviyo.delivery.key_pause import ResumeRequests

    loaded = _config(config)
    try:
        name = loaded.connection(connection).name
    except ConfigError as error:
        raise fail_config(error) from None
    url = _metrics_url(loaded)
    try:
        before = _credential_samples(url, name)
    except OSError:
        typer.echo(f"error: serve is not answering at {url}; a stopped serve pauses nothing", err=True)
        raise typer.Exit(code=1) from None
    if before.get("mpk_credentials_ok", 1.0) == 1.0:
        typer.echo(f"{name}: delivery is not paused")
        return
    try:
        ResumeRequests(loaded.service.store).ask(name)
    except OSError as error:
        typer.echo(f"error: cannot leave the request for serve beside its store: {error}", err=True)
        raise typer.Exit(code=1) from None
    after = _await_probe(url, name, before.get("probes", 0.0), wait)
    if after.get("mpk_credentials_ok") == 1.0:
        typer.echo(f"{name}: delivery resumed: Klaviyo accepted the credentials")
        return
    still = [line for line in _paused(url) if line.startswith(f"{name}: ")]
    typer.echo(still[0] if still else f"{name}: delivery still paused", err=True)
    raise typer.Exit(code=1)


def _await_probe(url: str, name: str, probes: float, wait_s: float) -> dict[str, float]:
    """The connection's credential samples once a probe newer than ``probes`` has a verdict, or at ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            now = _credential_samples(url, name)
        except OSError:
            now = {}
        if now.get("probes", 0.0) > probes or time.monotonic() >= deadline:
            return now
        time.sleep(0.1)


def _credential_samples(url: str, name: str) -> dict[str, float]:
    """``mpk_credentials_ok`` and the number of probes (``probes``) of one connection."""
    found: dict[str, float] = {}
    for family in _scrape(url):
        for sample in family.samples:
            if sample.labels.get("connection") != name:
                continue
            if sample.name == "mpk_credentials_ok":
                found["mpk_credentials_ok"] = sample.value
            elif sample.name == "mpk_credential_probes_total":
                found["probes"] = found.get("probes", 0.0) + sample.value
    return found
