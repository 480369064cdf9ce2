"""``mparticle-klaviyo init``: a commented starter config that loads, documents every key, never overwrites."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mparticle_klaviyo.cli import app
from mparticle_klaviyo.config import (
    DEFAULT_CONFIG_FILE,
    DEFAULT_KLAVIYO_URL,
    ENV_PREFIX,
    ConnectionSettings,
    ServiceSettings,
    load_config,
)
from mparticle_klaviyo.errors import ConfigError
from mparticle_klaviyo.init_config import starter_config
from mparticle_klaviyo.klaviyo.limits import DEFAULT_REVISION
from mparticle_klaviyo.mparticle.names import DEFAULT_SUPPORTED_PLATFORMS

REPO = Path(__file__).resolve().parents[1]
PUBLIC_KEY_VARIABLE = f"{ENV_PREFIX}SHOP__PUBLIC_API_KEY"
KEY_FROM_ENV = {PUBLIC_KEY_VARIABLE: "PUBKEY_init_Tq3w8"}

# The template's convention: "#key = ..." (no space) is a setting left out, "# ..." is prose.
_LEFT_OUT = re.compile(r"^#(?=[A-Za-z_\"\[])")
# A key's line: "key = ..." or, for the table-valued keys, "[connections.shop.key]"; maybe left out.
_KEY_LINE = re.compile(r"^#?(?:([a-z_]+) = |\[connections\.shop\.([a-z_]+)\])")
ALL_FIELDS = set(ConnectionSettings.model_fields) | set(ServiceSettings.model_fields)


def uncommented(text: str) -> str:
    """The template with every left-out setting switched on."""
    return "\n".join(_LEFT_OUT.sub("", line) for line in text.splitlines())


def key_of(line: str) -> str | None:
    """The setting a template line sets (switched on or left out), if any."""
    match = _KEY_LINE.match(line)
    return None if match is None else match.group(1) or match.group(2)


def init(*args: str) -> Any:
    return CliRunner().invoke(app, ["init", *args])


def default_of(field: str) -> Any:
    return ConnectionSettings.model_fields[field].get_default(call_default_factory=True)


def test_init_writes_the_packaged_template_and_says_what_to_do_next(tmp_path: Path) -> None:
    target = tmp_path / "x.toml"
    result = init(str(target))
    assert result.exit_code == 0, result.output
    assert target.read_text(encoding="utf-8") == starter_config()
    assert str(target) in result.stdout
    assert PUBLIC_KEY_VARIABLE in result.stdout


def test_init_without_a_path_writes_the_default_config_file_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert init().exit_code == 0
    assert (tmp_path / DEFAULT_CONFIG_FILE).read_text(encoding="utf-8") == starter_config()


def test_init_refuses_to_overwrite_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "mine.toml"
    target.write_text("# my settings\n", encoding="utf-8")
    result = init(str(target))
    assert result.exit_code == 1
    assert f"{target} already exists" in result.stderr
    assert target.read_text(encoding="utf-8") == "# my settings\n"


def test_init_refuses_a_missing_folder_and_does_not_create_it(tmp_path: Path) -> None:
    target = tmp_path / "absent" / "x.toml"
    result = init(str(target))
    assert result.exit_code == 1
    assert f"the folder {target.parent} does not exist" in result.stderr
    assert not target.parent.exists()


def test_the_written_file_loads_once_the_environment_supplies_the_public_key(tmp_path: Path) -> None:
    target = tmp_path / "x.toml"
    init(str(target))
    config = load_config(target, environ=KEY_FROM_ENV)
    shop = config.connection(None)
    assert shop.name == "shop"
    assert shop.public_key.reveal() == "PUBKEY_init_Tq3w8"
    assert shop.klaviyo_url == DEFAULT_KLAVIYO_URL
    assert not shop.server_mode
    assert config.service == ServiceSettings()


def test_without_the_public_key_the_file_is_refused_naming_it(tmp_path: Path) -> None:
    target = tmp_path / "x.toml"
    init(str(target))
    with pytest.raises(ConfigError) as raised:
        load_config(target, environ={})
    (problem,) = raised.value.problems
    assert problem.startswith(f"{target}: connections.shop.public_api_key: is required")


def test_the_template_names_every_connection_and_service_key(tmp_path: Path) -> None:
    # Every left-out setting switched on must still be a valid config: placeholders included.
    target = tmp_path / "all.toml"
    target.write_text(uncommented(starter_config()), encoding="utf-8")
    config = load_config(target, environ={})
    raw = tomllib.loads(target.read_text(encoding="utf-8"))
    assert set(raw["connections"]["shop"]) == set(ConnectionSettings.model_fields)
    assert set(raw["service"]) == set(ServiceSettings.model_fields)
    assert config.connection("shop").server_mode


def test_the_values_the_template_sets_are_the_defaults() -> None:
    raw = tomllib.loads(starter_config())
    assert ServiceSettings.model_validate(raw["service"]) == ServiceSettings()
    active = ConnectionSettings.model_validate({**raw["connections"]["shop"], "public_api_key": "k"})
    for key in raw["connections"]["shop"]:
        assert getattr(active, key) == default_of(key), key


def test_the_left_out_revision_and_platforms_are_the_defaults_too() -> None:
    shop = tomllib.loads(uncommented(starter_config()))["connections"]["shop"]
    assert shop["revision"] == DEFAULT_REVISION
    assert shop["supported_platforms"] == list(DEFAULT_SUPPORTED_PLATFORMS)


def test_every_key_has_its_own_comment_right_above_it() -> None:
    lines = starter_config().splitlines()
    for number, line in enumerate(lines):
        key = key_of(line)
        if key in ALL_FIELDS:
            assert lines[number - 1].startswith("# "), f"line {number + 1}: {key} has no comment"


def test_the_header_sends_keys_and_secrets_to_the_environment() -> None:
    header = starter_config().split("\n[connections.", 1)[0]
    assert "MPARTICLE_KLAVIYO_CONNECTIONS__<NAME>__<KEY>" in header
    assert PUBLIC_KEY_VARIABLE in header


def readme_configuration_block() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_readme_configuration_and_the_template_document_the_same_keys() -> None:
    block = readme_configuration_block()
    template_keys = {key_of(line) for line in starter_config().splitlines()}
    for key in sorted(ALL_FIELDS):
        assert re.search(rf"\b{key}\b", block), f"README's Configuration does not name {key}"
        assert key in template_keys, f"the template does not name {key}"


def test_the_readme_configuration_and_the_template_give_the_same_service_defaults() -> None:
    readme_service = tomllib.loads(readme_configuration_block())["service"]
    assert readme_service == tomllib.loads(starter_config())["service"]
