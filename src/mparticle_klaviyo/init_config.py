"""``mparticle-klaviyo init``: write the commented starter configuration shipped with the package."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


class InitError(Exception):
    """The starter configuration could not be written; the message says why and where."""


def starter_config() -> str:
    """The starter configuration's text (package data ``templates/config.toml``)."""
    return (files("mparticle_klaviyo") / "templates" / "config.toml").read_text(encoding="utf-8")


def write_starter_config(path: Path) -> None:
    """Write the starter configuration to ``path``, which must not exist yet; its folder must."""
    text = starter_config()
    try:
        # Mode "x" refuses an existing file atomically: a configuration is never overwritten.
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise InitError(f"{path} already exists; not overwriting it (move it away or give another PATH)") from None
    except FileNotFoundError:
        raise InitError(f"cannot write {path}: the folder {path.parent} does not exist; create it first") from None
    except OSError as error:
        raise InitError(f"cannot write {path}: {error.strerror or error}") from None
