"""Service commands: ``serve``, ``status``, ``check``, ``resume`` and ``dlq list|show|redrive|purge``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import msgspec
import typer
from prometheus_client.metrics_core import Metric
from rich.console import Console
from rich.table import Table

from mparticle_klaviyo.cli_options import ConfigOption, fail_config
from mparticle_klaviyo.config import DEFAULT_CONFIG_FILE, Config, Connection, load_config
from mparticle_klaviyo.delivery.dead_letters import job_view, preview, redrive_logged
from mparticle_klaviyo.delivery.lane import Transport
from mparticle_klaviyo.delivery.units import now_ms
from mparticle_klaviyo.errors import ConfigError
from mparticle_klaviyo.store.base import DeadFilter, Job, JobStore
from mparticle_klaviyo.store.errors import StoreError
from mparticle_klaviyo.store.factory import describe, exists, locate, migrate_store, open_store

if TYPE_CHECKING:
    from mparticle_klaviyo.service.runner import Service

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


def _store(config: Config) -> JobStore:
    if not exists(config.service.store):
        where = describe(config.service.store)
        typer.echo(f"error: no job store at {where} (has `serve` run with this config?)", err=True)
        raise typer.Exit(code=2)
    try:
        return open_store(config.service.store, dedup_window_s=config.service.dedup_window_s)
    except StoreError as error:  # e.g. the database is unreachable; never shows its password
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None


@service_app.command("serve")
def serve_command(config: ConfigOption = Path(DEFAULT_CONFIG_FILE)) -> None:
    """Run the service: HTTP ingest (Firehose, Events API, Webhook) and delivery to Klaviyo.

    Stops gracefully on SIGTERM/SIGINT. Logs are JSON lines on stderr.

    One serve per SQLite store: a second one on the same file exits with code 2. Several serve
    nodes may share a PostgreSQL store: each Klaviyo account is delivered by the node holding its
    lease, and every node ingests.
    """
    from mparticle_klaviyo.observe.logs import configure_logging
    from mparticle_klaviyo.service.runner import serve

    loaded = _config(config)
    configure_logging(loaded.service.log_level)
    try:
        asyncio.run(serve(loaded, mount=_mount_console))
    except StoreError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    except OSError as error:
        # The store's directory missing or unwritable, the port taken: say which, no traceback.
        typer.echo(f"error: cannot start serving: {error}", err=True)
        raise typer.Exit(code=2) from None


def _mount_console(service: Service) -> None:
    """The browser console under /console, when ``[service] console_password`` is set."""
    from mparticle_klaviyo.console.app import mount_console

    if mount_console(
        service.app,
        service.config,
        service.store,
        service.metrics,
        service.ingest.wake,
        service.location.shown,
        node=service.node,
    ):
        logging.getLogger("mparticle_klaviyo.serve").info("console enabled", extra={"path": "/console"})


@service_app.command("migrate")
def migrate_command(config: ConfigOption = Path(DEFAULT_CONFIG_FILE)) -> None:
    """Create or upgrade the job store's tables and print its schema version.

    The store is [service] store: a SQLite file or a postgresql:// URL. `serve`, `status`, `dlq`
    and `replay --enqueue` migrate when they open it too; processes migrating at once apply each
    step once.
    """
    loaded = _config(config)
    try:
        version = migrate_store(loaded.service.store)
    except StoreError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    except OSError as error:  # the SQLite file's folder missing or unwritable
        typer.echo(f"error: cannot open the job store {describe(loaded.service.store)}: {error.strerror}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(f"job store {describe(loaded.service.store)}: schema version {version}")


@service_app.command("status")
def status_command(
    config: ConfigOption = Path(DEFAULT_CONFIG_FILE),
    sample: Annotated[float, typer.Option(min=0, help="Seconds between two /metrics reads for rates (0: none).")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")] = False,
) -> None:
    """Backlog, dead letters by reason, the cluster's nodes and leases, and the service's totals, rates, pauses."""
    from mparticle_klaviyo.delivery.tenure import accounts_of
    from mparticle_klaviyo.service.cluster import cluster_view
    from mparticle_klaviyo.service.status import build_status, dead_letters, scrape_metrics

    loaded = _config(config)
    store = _store(loaded)
    try:
        counts, dead = store.counts(), dead_letters(store)
        accounts = accounts_of(loaded.connections.values())
        cluster = cluster_view(store, accounts, loaded.service.account_lease_s, time.time())
    finally:
        store.close()
    url = _metrics_url(loaded)
    status = build_status(
        store=describe(loaded.service.store),
        counts=counts,
        dead=dead,
        connections=loaded.connections,
        metrics_url=url,
        scrape=scrape_metrics(url, sample),
        now=time.time(),
        cluster=cluster,
    )
    if as_json:
        typer.echo(msgspec.json.format(msgspec.json.encode(status), indent=2).decode())
        return
    from mparticle_klaviyo.status_view import print_status

    print_status(Console(), status)


def _metrics_url(config: Config) -> str:
    return f"http://{config.service.host}:{config.service.port}/metrics"


def _scrape(url: str) -> list[Metric]:
    """The metric families of the running service's /metrics (OSError when it is not there)."""
    from mparticle_klaviyo.service.status import read_families

    return read_families(url)


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


@dlq.command("list")
def dlq_list(
    config: ConfigOption = Path(DEFAULT_CONFIG_FILE),
    connection: ConnectionFilter = None,
    reason: ReasonFilter = None,
    limit: Annotated[int, typer.Option(min=1, help="Most rows to show.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document (for scripts).")] = False,
) -> None:
    """Dead-lettered jobs, oldest first, with their reason and Klaviyo's answer."""
    store = _store(_config(config))
    try:
        # One more than shown: whether there are more is worth saying to a script.
        jobs = store.dead(DeadFilter(connection=connection, reason=reason), limit + 1)
    finally:
        store.close()
    more, jobs = len(jobs) > limit, jobs[:limit]
    if as_json:
        listed = {"dead_letters": [_listed(job) for job in jobs], "limit": limit, "more": more}
        typer.echo(msgspec.json.format(msgspec.json.encode(listed), indent=2).decode())
        return
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
    typer.echo(msgspec.json.format(msgspec.json.encode(job_view(found[0])), indent=2).decode())


def _listed(job: Job) -> dict[str, object]:
    """A dead job as ``dlq list --json`` gives it: no key and no input (they hold personal data)."""
    return {
        "id": job.id,
        "connection": job.connection,
        "kind": job.kind,
        "reason": job.dead_reason,
        "detail": job.last_error,
        "attempts": job.attempts,
        "throttles": job.throttles,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(job.created_at)),
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


def _preview_redrive(store: JobStore, where: DeadFilter, config: Config) -> None:
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
        ResumeRequests(locate(loaded.service.store).local_name).ask(name)
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
