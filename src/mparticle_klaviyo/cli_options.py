"""Options and helpers shared by the command modules (``cli``, ``cli_service``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mparticle_klaviyo.config import Config, Connection, load_config
from mparticle_klaviyo.errors import ConfigError

ConfigOption = Annotated[Path, typer.Option("--config", "-c", help="TOML configuration file.", show_default=True)]
ConnectionOption = Annotated[
    str | None, typer.Option("--connection", help="Connection name ([connections.NAME]); optional if only one.")
]


def fail_config(error: ConfigError) -> typer.Exit:
    """Print each configuration problem on its own line; exit code 2."""
    for problem in error.problems:
        typer.echo(f"config error: {problem}", err=True)
    return typer.Exit(code=2)


def load_connection(config: Path, connection: str | None) -> Connection:
    """Load the configuration and pick a connection, exiting with code 2 on a problem."""
    try:
        loaded: Config = load_config(config)
        return loaded.connection(connection)
    except ConfigError as error:
        raise fail_config(error) from None
