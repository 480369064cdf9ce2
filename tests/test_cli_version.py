"""``mparticle-klaviyo --version``: one version, from the package metadata, printed with the name."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

from typer.testing import CliRunner

import mparticle_klaviyo
from mparticle_klaviyo.cli import app

REPO = Path(__file__).resolve().parents[1]


def test_the_version_is_pyprojects_as_installed() -> None:
    with (REPO / "pyproject.toml").open("rb") as handle:
        declared = tomllib.load(handle)["project"]["version"]
    assert version("mparticle-klaviyo") == declared
    assert mparticle_klaviyo.__version__ == declared


def test_dash_dash_version_prints_the_name_and_version_and_exits_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mparticle_klaviyo", "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"mparticle-klaviyo {mparticle_klaviyo.__version__}\n"


def test_dash_dash_version_wins_over_a_command() -> None:
    result = CliRunner().invoke(app, ["--version", "map", "no-such-file.json"])
    assert result.exit_code == 0
    assert result.stdout == f"mparticle-klaviyo {mparticle_klaviyo.__version__}\n"


def test_the_version_command_prints_the_same_version() -> None:
    result = CliRunner().invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == mparticle_klaviyo.__version__
