"""Configuration: a TOML file with one ``[connections.NAME]`` table each, plus env overrides.

Environment variables ``MPARTICLE_KLAVIYO_CONNECTIONS__<NAME>__<KEY>`` override (or add) one key
of one connection; table values (mappings, lists) are given as JSON. Every problem is reported
at once, each naming its key; no message ever contains a key's value.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from mparticle_klaviyo.config_checks import (
    CREDENTIALS,
    Endpoint,
    RatePair,
    check_external_id_identity,
    check_klaviyo_url,
    check_log_level,
    check_not_blank,
    check_worker_count,
    pairing_problems,
    shared_credential_problems,
    validation_problems,
)
from mparticle_klaviyo.config_checks import ENV_PREFIX as ENV_PREFIX  # where it was always imported from
from mparticle_klaviyo.errors import ConfigError
from mparticle_klaviyo.klaviyo.limits import DEFAULT_RATE_LIMITS, DEFAULT_REVISION, RateLimit
from mparticle_klaviyo.mapping.names import FieldPath
from mparticle_klaviyo.mapping.phone import region_for_country
from mparticle_klaviyo.mapping.settings import (
    MappingSettings,
    parse_consent_mapping,
    parse_email_identity,
    parse_phone_identifier,
    parse_platforms,
    parse_property_mapping,
)
from mparticle_klaviyo.mparticle.names import DEFAULT_SUPPORTED_PLATFORMS
from mparticle_klaviyo.secret import Secret
from mparticle_klaviyo.store.location import check_store

DEFAULT_CONFIG_FILE = "mparticle-klaviyo.toml"
DEFAULT_KLAVIYO_URL = "https://a.klaviyo.com"
_JSON_KEYS = {"consent_mapping", "property_mapping", "metric_names", "supported_platforms", "rate_limits"}


class ConnectionSettings(BaseModel):
    """One ``[connections.NAME]`` table, validated (seed setting names in snake case)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    public_api_key: SecretStr
    private_api_key: SecretStr | None = None
    external_email_identity_type: str = "email"
    phone_identifier: str = "mobile_number"
    external_id_identity_type: str | None = None
    consent_mapping: dict[str, str] = Field(default_factory=dict)
    consent_removal: bool = False
    forward_erasure: bool = False
    property_mapping: dict[str, FieldPath] = Field(default_factory=dict)
    list_id: str | None = None
    revision: str = DEFAULT_REVISION
    default_phone_region: str | None = None
    metric_names: dict[str, str] = Field(default_factory=dict)
    supported_platforms: frozenset[str] = parse_platforms(list(DEFAULT_SUPPORTED_PLATFORMS))
    klaviyo_url: str = DEFAULT_KLAVIYO_URL
    rate_limits: dict[Endpoint, RatePair] = Field(default_factory=dict)
    firehose_token: SecretStr | None = None
    events_api_key: SecretStr | None = None
    events_api_secret: SecretStr | None = None
    webhook_authorization: SecretStr | None = None

    @field_validator(*CREDENTIALS)
    @classmethod
    def _key_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_not_blank(value.get_secret_value())
        return value

    @field_validator("external_email_identity_type", mode="before")
    @classmethod
    def _email_identity(cls, value: Any) -> str:
        return parse_email_identity(_need_str(value))

    @field_validator("phone_identifier", mode="before")
    @classmethod
    def _phone_identifier(cls, value: Any) -> str:
        return parse_phone_identifier(_need_str(value))

    @field_validator("external_id_identity_type", mode="before")
    @classmethod
    def _external_id_identity(cls, value: Any) -> str | None:
        return None if value is None else check_external_id_identity(_need_str(value))

    @field_validator("consent_mapping", mode="before")
    @classmethod
    def _consent_mapping(cls, value: Any) -> dict[str, str]:
        return parse_consent_mapping(value)

    @model_validator(mode="after")
    def _private_features_need_the_private_key(self) -> ConnectionSettings:
        if self.consent_removal and self.private_api_key is None:
            # Only the private API can unsubscribe; the public key would silently not.
            raise ValueError("consent_removal needs private_api_key (Klaviyo's unsubscribe is private-key only)")
        if self.forward_erasure and self.private_api_key is None:
            raise ValueError("forward_erasure needs private_api_key (Klaviyo's deletion jobs are private-key only)")
        return self

    @field_validator("property_mapping", mode="before")
    @classmethod
    def _property_mapping(cls, value: Any) -> dict[str, FieldPath]:
        return parse_property_mapping(value)

    @field_validator("metric_names", mode="before")
    @classmethod
    def _metric_names(cls, value: Any) -> Any:
        # Firehose settings arrive as strings: accept the table as JSON text too.
        if isinstance(value, str):
            try:
                return json.loads(value) if value.strip() else {}
            except json.JSONDecodeError as exc:
                raise ValueError(f"is not valid JSON ({exc.msg})") from None
        return value

    @field_validator("supported_platforms", mode="before")
    @classmethod
    def _platforms(cls, value: Any) -> frozenset[str]:
        return parse_platforms(value)

    @field_validator("default_phone_region", mode="before")
    @classmethod
    def _region(cls, value: Any) -> str | None:
        if value is None or value == "":
            return None
        region = region_for_country(_need_str(value))
        if region is None:
            raise ValueError("must be an ISO 3166 country code or name, e.g. US")
        return region

    @field_validator("revision")
    @classmethod
    def _revision(cls, value: str) -> str:
        if len(value) < 10 or value[4] != "-" or value[7] != "-":
            raise ValueError("must look like YYYY-MM-DD, e.g. " + DEFAULT_REVISION)
        return value

    @field_validator("klaviyo_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_klaviyo_url(value)


def _need_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a string")
    return value


class ServiceSettings(BaseModel):
    """The ``[service]`` table: how ``serve`` listens, stores and delivers."""

    # Strict: the table comes from TOML only, where 8080.0, "8080" or true for a port are mistakes.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)  # 0: any free port (tests, one-off runs)
    # A SQLite file path or a postgresql:// URL; kept out of reprs, as a URL may hold a password.
    store: str = Field(default="mparticle-klaviyo.sqlite3", repr=False)
    high_water_mark: int = Field(default=1_000_000, ge=1)
    max_batch_bytes: int = Field(default=128 * 1024, ge=1024)
    max_batches_per_request: int = Field(default=100, ge=1)
    # Ingest hardening: memory admission and how long a client may take (README: Operations).
    ingest_memory_budget_mb: int = Field(default=256, ge=1)
    admission_timeout_s: float = Field(default=30.0, gt=0)
    header_timeout_s: float = Field(default=15.0, gt=0)
    body_idle_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=60.0, gt=0)
    body_min_rate: int = Field(default=1024, ge=0)  # bytes/s, averaged after the first 5 s
    store_min_free_mb: int = Field(default=64, ge=0)  # below it, ingest stops acknowledging
    max_attempts: int = Field(default=8, ge=1)
    max_age_s: float = Field(default=7 * 86400, gt=0)
    lease_s: float = Field(default=120.0, gt=0)
    # PostgreSQL, many nodes: how long a node's delivery lease on a Klaviyo account lasts without
    # a heartbeat (one every third of it); a dead node's accounts move after about this long.
    account_lease_s: float = Field(default=15.0, ge=1.0)
    shutdown_timeout_s: float = Field(default=20.0, gt=0)
    dedup_window_s: float = Field(default=7 * 86400, gt=0)
    max_concurrency: int = Field(default=64, ge=1)
    # Processes that plan ingest bodies beside the event loop; "auto": one per core up to four
    # (none on one core); 0: plan in the serving process (README: Sizing).
    ingest_workers: int | Literal["auto"] = "auto"
    log_level: str = "info"
    # Turns the browser console on (/console); a SecretStr, so reprs and logs show '**********'.
    console_password: SecretStr | None = Field(default=None, repr=False)

    @field_validator("console_password", mode="before")
    @classmethod
    def _console_password(cls, value: object) -> object:
        # Strict mode takes no plain string for a SecretStr: wrap it, after checking its length.
        if isinstance(value, str):
            if len(value) < 12:
                raise ValueError("must be at least 12 characters (it guards redrive and purge)")
            return SecretStr(value)
        return value

    @field_validator("host", "store")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        return check_not_blank(value)

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        return check_store(value)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        return check_log_level(value)

    @field_validator("ingest_workers", mode="before")
    @classmethod
    def _ingest_workers(cls, value: object) -> object:
        return check_worker_count(value)


class Connection:
    """A named, validated connection: credentials plus the mapper's settings."""

    def __init__(self, name: str, settings: ConnectionSettings, table: dict[str, Any]) -> None:
        self.name = name
        self._table = table
        self.public_key = Secret(settings.public_api_key.get_secret_value())
        private = settings.private_api_key.get_secret_value() if settings.private_api_key else ""
        self.private_key = Secret(private) if private else None
        self.revision = settings.revision
        self.klaviyo_url = settings.klaviyo_url
        self.mapping = MappingSettings(
            email_identity=settings.external_email_identity_type,
            phone_identity=settings.phone_identifier,
            external_id_identity=settings.external_id_identity_type,
            consent_mapping=settings.consent_mapping,
            property_mapping=settings.property_mapping,
            metric_names=settings.metric_names,
            supported_platforms=settings.supported_platforms,
            default_phone_region=settings.default_phone_region,
            list_id=settings.list_id,
            server_mode=self.private_key is not None,
            consent_removal=settings.consent_removal,
        )
        self.settings = settings
        self.rate_limits = {
            **DEFAULT_RATE_LIMITS,
            **{endpoint: RateLimit(*limits) for endpoint, limits in settings.rate_limits.items()},
        }

    def with_overrides(self, overrides: Mapping[str, Any]) -> Connection:
        """This connection with some settings replaced (e.g. Firehose ``account_settings``).

        Raises ``pydantic.ValidationError`` when an override is invalid.
        """
        table = {**self._table, **overrides}
        return Connection(self.name, ConnectionSettings.model_validate(table), table)

    @property
    def account(self) -> tuple[str, Secret]:
        """The Klaviyo account this connection sends to: its URL and public key (kept secret)."""
        return (self.klaviyo_url, self.public_key)

    @property
    def server_mode(self) -> bool:
        """True when a private key is set: bulk ``/api/*`` endpoints are used."""
        return self.private_key is not None

    def __repr__(self) -> str:
        mode = "server" if self.server_mode else "client"
        return f"Connection(name={self.name!r}, mode={mode}, klaviyo_url={self.klaviyo_url!r})"


class Config:
    """All connections of a configuration file."""

    def __init__(self, connections: dict[str, Connection], source: str, service: ServiceSettings | None = None) -> None:
        self.connections = connections
        self.source = source
        self.service = service or ServiceSettings()

    def connection(self, name: str | None) -> Connection:
        """The named connection, or the only one when no name is given."""
        if name is None:
            if len(self.connections) == 1:
                return next(iter(self.connections.values()))
            names = ", ".join(sorted(self.connections)) or "none"
            raise ConfigError([f"{self.source}: choose a connection with --connection (configured: {names})"])
        if name not in self.connections:
            names = ", ".join(sorted(self.connections)) or "none"
            raise ConfigError([f"{self.source}: no connection {name!r} (configured: {names})"])
        return self.connections[name]


CONSOLE_PASSWORD_VARIABLE = "MPARTICLE_KLAVIYO_CONSOLE_PASSWORD"


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate the configuration; raises ConfigError listing every problem."""
    environ = os.environ if environ is None else environ
    raw = _read_toml(path)
    tables = raw.get("connections", {})
    problems: list[str] = []
    if not isinstance(tables, dict):
        raise ConfigError([f"{path}: 'connections' must be a table of [connections.NAME] tables"])
    unknown = sorted(set(raw) - {"connections", "service"})
    problems += [f"{path}: unknown top-level key {key!r} (expected [service] or [connections.NAME])" for key in unknown]
    service_table = raw.get("service", {})
    if CONSOLE_PASSWORD_VARIABLE in environ and isinstance(service_table, dict):
        # Like the keys, the console's password is better kept out of the file.
        service_table = {**service_table, "console_password": environ[CONSOLE_PASSWORD_VARIABLE]}
    service = _validate_service(service_table, path, problems)
    _apply_env(tables, environ, problems)
    connections: dict[str, Connection] = {}
    for name, table in tables.items():
        connection = _validate(name, table, path, problems)
        if connection is not None:
            connections[name] = connection
    if not tables:
        problems.append(f"{path}: no connections; add a [connections.NAME] table with public_api_key")
    problems += _shared_account_problems(connections, path)
    problems += shared_credential_problems(tables, str(path))
    if problems:
        raise ConfigError(problems)
    return Config(connections, str(path), service)


def _shared_account_problems(connections: Mapping[str, Connection], path: Path) -> list[str]:
    """Connections sending to one Klaviyo account share its limits, so they must agree on them."""
    by_account: dict[tuple[str, Secret], list[Connection]] = {}
    for connection in connections.values():
        by_account.setdefault(connection.account, []).append(connection)
    return [
        f"{path}: connections {', '.join(sorted(c.name for c in group))} send to the same Klaviyo account "
        "(public_api_key and klaviyo_url), whose rate limits they share: give them the same rate_limits"
        for group in by_account.values()
        if len({tuple(sorted(c.rate_limits.items())) for c in group}) > 1
    ]


def _validate_service(table: Any, path: Path, problems: list[str]) -> ServiceSettings:
    """Validate the ``[service]`` table, adding one message per problem."""
    if not isinstance(table, dict):
        problems.append(f"{path}: service: must be a table")
        return ServiceSettings()
    try:
        return ServiceSettings.model_validate(table)
    except ValidationError as exc:
        problems += validation_problems(f"{path}: service", exc, ServiceSettings.model_fields)
        return ServiceSettings()


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found (pass --config FILE)"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def _apply_env(tables: dict[str, Any], environ: Mapping[str, str], problems: list[str]) -> None:
    """Merge ``MPARTICLE_KLAVIYO_CONNECTIONS__NAME__KEY`` variables into the tables."""
    by_lower = {name.lower(): name for name in tables}
    for variable, value in environ.items():
        if not variable.startswith(ENV_PREFIX):
            continue
        parts = variable[len(ENV_PREFIX) :].split("__")
        if len(parts) != 2 or not all(parts):
            problems.append(f"{variable}: expected {ENV_PREFIX}<NAME>__<KEY>")
            continue
        name = by_lower.get(parts[0].lower(), parts[0].lower())
        key = parts[1].lower()
        table = tables.setdefault(name, {})
        by_lower[name.lower()] = name
        if not isinstance(table, dict):
            continue  # _validate reports "must be a table" once
        parsed = _env_value(variable, key, value, problems)
        if parsed is not _INVALID:
            table[key] = parsed


_INVALID = object()


def _env_value(variable: str, key: str, value: str, problems: list[str]) -> Any:
    if key not in _JSON_KEYS or key in {"consent_mapping", "property_mapping"}:
        return value  # the two mappings also accept mParticle's JSON string encoding
    if key == "supported_platforms" and not value.lstrip().startswith("["):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        problems.append(f"{variable}: must be JSON")
        return _INVALID  # one message for this problem, not a second one from validation


def _validate(name: str, table: Any, path: Path, problems: list[str]) -> Connection | None:
    """Validate one connection table, adding one message per problem."""
    where = f"{path}: connections.{name}"
    if not isinstance(table, dict):
        problems.append(f"{where}: must be a table")
        return None
    # Checked on the table, not the model: it is reported even when another setting is invalid.
    problems += pairing_problems(where, name, table)
    try:
        return Connection(name, ConnectionSettings.model_validate(table), table)
    except ValidationError as exc:
        problems += validation_problems(where, exc, ConnectionSettings.model_fields, connection=name)
        return None
