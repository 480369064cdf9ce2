"""The release: what deploy/ ships agrees with the code, and an installed build works outside the checkout.

The ``test_release_*`` tests are slow (about 20 s together): they copy what deploy/Dockerfile
copies, run deploy/install.sh (the Dockerfile's install step) into a fresh venv, and run the
installed command from a folder outside the checkout. Docker itself is not needed.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import pytest

from mparticle_klaviyo.config import ENV_PREFIX, ConnectionSettings, ServiceSettings, load_config
from mparticle_klaviyo.init_config import starter_config
from tests.conftest import skip_or_fail

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CONFIG_PATH = "/etc/mparticle-klaviyo/mparticle-klaviyo.toml"
STATE_DIR = "/var/lib/mparticle-klaviyo"
SERVE_CMD = ["mparticle-klaviyo", "serve", "--config", CONFIG_PATH]
KEY_FROM_ENV = {f"{ENV_PREFIX}SHOP__PUBLIC_API_KEY": "PUBKEY_release_Lk5s2"}


def dockerfile() -> list[tuple[str, str]]:
    """deploy/Dockerfile as (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text(encoding="utf-8"))
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (word.upper(), rest.strip())
        for word, _, rest in (line.partition(" ") for line in lines if line and not line.startswith("#"))
    ]


def instructions(name: str) -> list[str]:
    return [arguments for instruction, arguments in dockerfile() if instruction == name]


def build_copies() -> list[tuple[list[str], str]]:
    """The Dockerfile's COPY steps into its build folder: (sources, relative destination)."""
    copies = [arguments.split() for arguments in instructions("COPY")]
    return [(words[:-1], words[-1]) for words in copies if not words[-1].startswith("/")]


def systemd_unit(name: str = "mparticle-klaviyo.service") -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read(DEPLOY / "systemd" / name, encoding="utf-8")
    return parser


def env_example() -> list[tuple[str, str, bool]]:
    """deploy/systemd/env.example's variables: (name, value, set) where set is False for "#NAME=..."."""
    found = []
    for line in (DEPLOY / "systemd" / "env.example").read_text(encoding="utf-8").splitlines():
        match = re.match(r"^(#?)([A-Z0-9_]+)=(.*)$", line)
        if match:
            found.append((match.group(2), match.group(3), match.group(1) == ""))
    return found


# --- static checks of deploy/ ---------------------------------------------------------------------


def test_the_systemd_unit_serves_the_documented_config_and_restarts_on_failure() -> None:
    service = systemd_unit()["Service"]
    assert service["ExecStart"].split()[1:] == SERVE_CMD[1:]
    assert PurePosixPath(service["ExecStart"].split()[0]).name == "mparticle-klaviyo"
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "/etc/mparticle-klaviyo/env"


def test_the_systemd_stop_timeout_outlasts_the_default_drain() -> None:
    timeout = systemd_unit()["Service"]["TimeoutStopSec"]
    assert timeout.endswith("s")
    assert float(timeout.removesuffix("s")) > ServiceSettings().shutdown_timeout_s


def test_the_systemd_unit_keeps_the_store_in_its_state_directory_and_writes_nowhere_else() -> None:
    service = systemd_unit()["Service"]
    assert f"/var/lib/{service['StateDirectory']}" == STATE_DIR
    assert service["WorkingDirectory"] == STATE_DIR  # where the template's relative store lands
    assert service["ReadWritePaths"].split() == [STATE_DIR]
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["DynamicUser"] == "yes"


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        skip_or_fail("systemd-analyze is not installed (Debian package systemd)")
    # verify also wants ExecStart's program to exist: point it at one that does.
    text = (DEPLOY / "systemd" / "mparticle-klaviyo.service").read_text(encoding="utf-8")
    unit = tmp_path / "mparticle-klaviyo.service"
    unit.write_text(re.sub(r"(?m)^ExecStart=\S+", "ExecStart=/bin/echo", text), encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


# What a node of the template unit (several nodes on one machine) sets per instance.
TEMPLATE_SERVE_CMD = [*SERVE_CMD[:-1], "/etc/mparticle-klaviyo/%i.toml"]
PER_INSTANCE = {
    "StateDirectory": "mparticle-klaviyo-%i",
    "WorkingDirectory": f"{STATE_DIR}-%i",
    "ReadWritePaths": f"{STATE_DIR}-%i",
}


def test_the_template_unit_is_the_plain_unit_with_a_config_and_directory_per_node() -> None:
    plain, template = systemd_unit()["Service"], systemd_unit("mparticle-klaviyo@.service")["Service"]
    assert template["ExecStart"].split()[1:] == TEMPLATE_SERVE_CMD[1:]
    assert template["ExecStart"].split()[0] == plain["ExecStart"].split()[0]
    assert {key: template[key] for key in PER_INSTANCE} == PER_INSTANCE
    # Everything else (stop timeout, restarts, env file, hardening) stays the plain unit's.
    differ = {*PER_INSTANCE, "ExecStart"}
    assert {key: value for key, value in template.items() if key not in differ} == {
        key: value for key, value in plain.items() if key not in differ
    }


def test_systemd_accepts_an_instance_of_the_template_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        skip_or_fail("systemd-analyze is not installed (Debian package systemd)")
    text = (DEPLOY / "systemd" / "mparticle-klaviyo@.service").read_text(encoding="utf-8")
    unit = tmp_path / "mparticle-klaviyo@node1.service"
    unit.write_text(re.sub(r"(?m)^ExecStart=\S+", "ExecStart=/bin/echo", text), encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_env_example_sets_only_real_connection_keys_and_with_the_template_loads(tmp_path: Path) -> None:
    variables = env_example()
    assert variables
    for name, _, _ in variables:
        assert name.startswith(f"{ENV_PREFIX}SHOP__"), name
        assert name.removeprefix(f"{ENV_PREFIX}SHOP__").lower() in ConnectionSettings.model_fields, name
    config_file = tmp_path / "x.toml"
    config_file.write_text(starter_config(), encoding="utf-8")
    environ = {name: value for name, value, is_set in variables if is_set}
    assert load_config(config_file, environ=environ).connection("shop").public_key.reveal() == "YOUR_PUBLIC_API_KEY"


def test_the_docker_config_listens_on_every_interface_and_stores_on_the_volume() -> None:
    config = load_config(DEPLOY / "docker.toml", environ=KEY_FROM_ENV)
    assert config.service.host == "0.0.0.0"
    assert str(PurePosixPath(config.service.store).parent) == STATE_DIR
    assert instructions("VOLUME") == [STATE_DIR]
    assert instructions("EXPOSE") == [str(config.service.port)]
    assert f"http://127.0.0.1:{config.service.port}/healthz" in instructions("HEALTHCHECK")[0]


def test_the_dockerfile_runs_serve_as_a_non_root_user_on_the_config_it_copies() -> None:
    assert instructions("FROM") == ["python:3.11-slim"]
    assert json.loads(instructions("CMD")[0]) == SERVE_CMD
    assert ["deploy/docker.toml", CONFIG_PATH] in [arguments.split() for arguments in instructions("COPY")]
    assert instructions("USER") not in ([], ["root"], ["0"])
    assert any("deploy/install.sh" in run for run in instructions("RUN"))


# --- the installed release (slow) -----------------------------------------------------------------


@dataclass(frozen=True)
class Release:
    """A fresh venv holding the project as deploy/install.sh installs it, run from a folder outside the checkout."""

    venv: Path
    site_packages: Path
    workdir: Path

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """The installed ``mparticle-klaviyo ARGS``, run in ``workdir``."""
        return subprocess.run(
            [str(self.venv / "bin" / "mparticle-klaviyo"), *args],
            cwd=self.workdir,
            env={**clean_env(), "COLUMNS": "200", **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


def clean_env() -> dict[str, str]:
    """This environment without anything that could make the checkout's code or settings leak in."""
    dropped = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")
    return {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("MPARTICLE_KLAVIYO_")}


def copy_build_context(checkout: Path) -> None:
    """Copy what the Dockerfile's COPY steps copy, each to the same path it has in the repository."""
    for sources, destination in build_copies():
        for source in sources:
            origin = REPO / source
            if origin.is_dir():
                skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
                shutil.copytree(origin, checkout / destination, ignore=skip, dirs_exist_ok=True)
            else:
                (checkout / destination).mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, checkout / destination / origin.name)
            assert (checkout / source).exists(), f"COPY {source} {destination} does not keep its path"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    root = tmp_path_factory.mktemp("release")
    checkout, venv = root / "checkout", root / "venv"
    copy_build_context(checkout)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_env())
    done = subprocess.run(
        ["sh", str(checkout / "deploy" / "install.sh"), str(venv / "bin" / "python")],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (site_packages,) = (venv / "lib").glob("python3*/site-packages")
    yield Release(venv, site_packages, root)


@pytest.fixture
def installed(release: Release, tmp_path: Path) -> Release:
    """The release, run from this test's own empty folder (outside the checkout)."""
    assert REPO not in tmp_path.parents
    return replace(release, workdir=tmp_path)


@pytest.mark.timeout(300)
def test_release_installs_the_built_package_with_its_license_templates_and_examples(installed: Release) -> None:
    package = installed.site_packages / "mparticle_klaviyo"
    (dist_info,) = installed.site_packages.glob("mparticle_klaviyo-*.dist-info")
    assert (dist_info / "licenses" / "LICENSE").read_text(encoding="utf-8") == (REPO / "LICENSE").read_text(
        encoding="utf-8"
    )
    assert (package / "templates" / "config.toml").read_text(encoding="utf-8") == starter_config()
    assert {p.name for p in (package / "examples").iterdir()} >= {"ios_shopper.json", "not_forwarded.jsonl"}
    where = subprocess.run(
        [str(installed.venv / "bin" / "python"), "-c", "import mparticle_klaviyo; print(mparticle_klaviyo.__file__)"],
        cwd=installed.workdir,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()) == package / "__init__.py"  # a real install, not a link to src/


@pytest.mark.timeout(300)
def test_release_prints_its_version(installed: Release) -> None:
    with (REPO / "pyproject.toml").open("rb") as handle:
        declared = tomllib.load(handle)["project"]["version"]
    done = installed.run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"mparticle-klaviyo {declared}\n"


@pytest.mark.timeout(300)
def test_release_init_writes_a_config_the_installed_command_uses(installed: Release) -> None:
    done = installed.run("init", "x.toml")
    assert done.returncode == 0, done.stderr
    assert (installed.workdir / "x.toml").read_text(encoding="utf-8") == starter_config()
    assert installed.run("init", "x.toml").returncode == 1
    example = installed.site_packages / "mparticle_klaviyo" / "examples" / "ios_shopper.json"
    mapped = installed.run("map", "--config", "x.toml", str(example), env=KEY_FROM_ENV)
    assert mapped.returncode == 0, mapped.stderr
    kinds = {json.loads(line)["kind"] for line in mapped.stdout.splitlines()}
    assert "request" in kinds


@pytest.mark.timeout(300)
def test_release_demo_runs_outside_the_checkout_even_beside_a_users_config(installed: Release) -> None:
    # A ./mparticle-klaviyo.toml from `init` has no "demo" connection: the demo must not need it.
    assert installed.run("init").returncode == 0
    done = installed.run("demo")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "17 events delivered, then 17 again on replay; the emulator recorded 17" in done.stdout
