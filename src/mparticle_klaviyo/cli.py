"""The ``mparticle-klaviyo`` command line: map, replay, registration, emulator, init, demo."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer

from mparticle_klaviyo import __version__
from mparticle_klaviyo.cli_options import ConfigOption, ConnectionOption, fail_config, load_connection
from mparticle_klaviyo.config import DEFAULT_CONFIG_FILE, Connection, load_config
from mparticle_klaviyo.delivery.batch_requests import map_lines
from mparticle_klaviyo.errors import ConfigError, InputError
from mparticle_klaviyo.jobs.inputs import InputItem, map_item, read_inputs
from mparticle_klaviyo.mparticle.registration import registration_response

app = typer.Typer(
    help="Forward mParticle event data to Klaviyo (self-hosted Klaviyo Event integration).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
_encoder = msgspec.json.Encoder()


def _write(line: dict[str, Any]) -> None:
    sys.stdout.buffer.write(_encoder.encode(line) + b"\n")


def _error_line(item: InputItem, error: InputError) -> dict[str, Any]:
    return {"kind": "error", "location": item.location, **error.to_json()}


@app.command("map")
def map_command(
    files: Annotated[list[Path], typer.Argument(help="Batch files: JSON, JSON lines, bulk arrays, Firehose; .gz ok.")],
    config: ConfigOption = Path(DEFAULT_CONFIG_FILE),
    connection: ConnectionOption = None,
) -> None:
    """Print what FILES turn into, one JSON object per line: requests, drops and warnings."""
    chosen = load_connection(config, connection)
    now_ms = time.time() * 1000
    errors = 0
    for item in read_inputs(_existing(files)):
        if item.error is not None:
            errors += 1
            _write(_error_line(item, item.error))
            continue
        try:
            mapped = map_item(item, chosen, now_ms)
        except InputError as error:
            errors += 1
            _write(_error_line(item, error))
            continue
        for line in map_lines(mapped):
            _write(line)
    sys.stdout.flush()
    if errors:
        raise typer.Exit(code=1)


def _existing(files: list[Path]) -> list[Path]:
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        typer.echo(f"error: no such file: {', '.join(missing)}", err=True)
        raise typer.Exit(code=2)
    return files


@app.command("replay")
def replay_command(
    files: Annotated[list[Path], typer.Argument(help="Batch files: JSON, JSON lines, bulk arrays, Firehose; .gz ok.")],
    config: ConfigOption = Path(DEFAULT_CONFIG_FILE),
    connection: ConnectionOption = None,
    concurrency: Annotated[int, typer.Option(min=1, max=1000, help="Most requests in flight.")] = 64,
    max_attempts: Annotated[int, typer.Option(min=1, help="Tries per request for 408/5xx/timeouts.")] = 8,
    max_retry_age: Annotated[float, typer.Option(min=1, help="Seconds after which a request stops retrying.")] = 900.0,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait for one Klaviyo answer.")] = 10.0,
    enqueue: Annotated[
        bool, typer.Option("--enqueue", help="Queue into the service's job store instead of sending now.")
    ] = False,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted replay of FILES from its checkpoint.")
    ] = False,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="Folder of the checkpoint (default: FILE.replay-checkpoint beside the first file)."),
    ] = None,
) -> None:
    """Deliver FILES to Klaviyo (or the emulator: klaviyo_url) through serve's delivery engine.

    The files' jobs go through a job store in FILE.replay-checkpoint/ beside the first file and
    are delivered within the account's rate limits, packed into bulk jobs in server mode.
    Retries 408/5xx/timeouts with backoff (429s honour Retry-After and do not count as
    attempts), shows a progress bar with an ETA and a summary. Ctrl-C lets requests already out
    finish, prints the summary so far and keeps the checkpoint for --resume; a complete run
    deletes it. Exit code 1 when any event failed or any input could not be read, 130 after Ctrl-C.
    """
    from mparticle_klaviyo.cli_replay import run_replay
    from mparticle_klaviyo.replay import ReplayOptions

    chosen = load_connection(config, connection)
    paths = _existing(files)
    if enqueue:
        _enqueue(paths, config, chosen)
        return
    options = ReplayOptions(
        max_concurrency=concurrency, max_attempts=max_attempts, max_retry_age_s=max_retry_age, timeout_s=timeout
    )
    quiet_delivery_log()
    code = run_replay(paths, chosen, options, resume, checkpoint)
    if code:
        raise typer.Exit(code=code)


def quiet_delivery_log() -> None:
    """Only the engine's critical log lines: the summary reports every dead letter and stop.

    The engine logs for ``serve``'s operators (a line per dead-lettered unit, the key pause and
    its ``resume`` advice); at a terminal they would only break up the progress bar.
    """
    logging.getLogger("mparticle_klaviyo.delivery").setLevel(logging.CRITICAL)


def _enqueue(paths: list[Path], config: Path, connection: Connection) -> None:
    """``replay --enqueue``: plan jobs as ingest would and commit them to the store."""
    from mparticle_klaviyo.replay import enqueue_files
    from mparticle_klaviyo.store.errors import StoreError
    from mparticle_klaviyo.store.factory import open_store

    service = load_config(config).service
    try:
        store = open_store(service.store, dedup_window_s=service.dedup_window_s)
        try:
            result = enqueue_files(paths, connection, store)
        finally:
            store.close()
    except StoreError as error:  # its message never holds the database password
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(
        f"queued {result.stored} job(s) ({result.duplicates} already queued before) from {result.batches} batch(es); "
        f"{result.input_errors} input error(s); dropped: {dict(result.dropped) or 'none'}"
    )
    if result.input_errors:
        raise typer.Exit(code=1)


@app.command("emulator")
def emulator_command(
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8788,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    company_id: Annotated[
        list[str] | None, typer.Option("--company-id", help="Accepted public key (repeatable).")
    ] = None,
    list_id: Annotated[list[str] | None, typer.Option("--list-id", help="Existing list id (repeatable).")] = None,
    rate_limit: Annotated[
        list[str] | None,
        typer.Option("--rate-limit", help="Override a limit: 'POST /client/events=10/100' (per s / per min)."),
    ] = None,
) -> None:
    """Run the strict Klaviyo emulator (state at GET /_emulator/state, faults at /_emulator/faults)."""
    from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig, serve_emulator

    defaults = EmulatorConfig()
    limits = dict(defaults.rate_limits)
    for spec in rate_limit or ():
        endpoint, limit = _parse_rate_limit(spec)
        limits[endpoint] = limit
    emulator_config = EmulatorConfig(
        company_ids=frozenset(company_id) if company_id else defaults.company_ids,
        lists=frozenset(list_id) if list_id else defaults.lists,
        rate_limits=limits,
    )
    serve_emulator(emulator_config, host, port)


def _parse_rate_limit(spec: str) -> tuple[str, tuple[int, int]]:
    endpoint, _, numbers = spec.rpartition("=")
    per_second, _, per_minute = numbers.partition("/")
    try:
        return endpoint.strip(), (int(per_second), int(per_minute))
    except ValueError:
        raise typer.BadParameter(f"{spec!r}: expected 'METHOD /path=PER_SECOND/PER_MINUTE'") from None


@app.command("registration")
def registration_command(
    erasure: Annotated[
        bool, typer.Option("--erasure", help="Declare erasure (DSR) support, for connections with forward_erasure.")
    ] = False,
) -> None:
    """Print the Firehose module_registration_response (event types, identities, platforms, settings)."""
    response = registration_response(erasure=erasure)
    typer.echo(msgspec.json.format(_encoder.encode(response), indent=2).decode())


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"mparticle-klaviyo {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_show_version, help="Print the version and exit."),
    ] = False,
) -> None:
    # Only here to carry the eager --version option; each command does its own work.
    pass


@app.command("init")
def init_command(
    path: Annotated[Path, typer.Argument(metavar="PATH", help="Where to write it.")] = Path(DEFAULT_CONFIG_FILE),
) -> None:
    """Write a commented starter configuration to PATH; never overwrites (exit code 1 if PATH exists)."""
    from mparticle_klaviyo.init_config import InitError, write_starter_config

    try:
        write_starter_config(path)
    except InitError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo(
        f"wrote {path}: set MPARTICLE_KLAVIYO_CONNECTIONS__SHOP__PUBLIC_API_KEY in the environment, "
        f"then try `mparticle-klaviyo map --config {path} BATCH.json`"
    )


@app.command("demo")
def demo_command() -> None:
    """Replay the bundled examples into an in-process Klaviyo emulator and show what it recorded."""
    from rich.console import Console

    from mparticle_klaviyo.demo import run_demo

    quiet_delivery_log()
    try:
        code = asyncio.run(run_demo(Console()))
    except ConfigError as error:
        raise fail_config(error) from None
    raise typer.Exit(code=code)


@app.command("version")
def version_command() -> None:
    """Print the version."""
    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    # The service commands import the store and the server: loaded only when the CLI runs.
    from mparticle_klaviyo.cli_service import service_app

    app.registered_commands.extend(service_app.registered_commands)
    app.registered_groups.extend(service_app.registered_groups)
    app()
