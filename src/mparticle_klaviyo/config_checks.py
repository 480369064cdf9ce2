"""Configuration checks beyond one model: value rules, problem messages with hints, shared credentials.

Every message names a key and says what to fix; none ever contains a value (keys are secrets).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Mapping
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, ValidationError

from mparticle_klaviyo.errors import validation_message
from mparticle_klaviyo.klaviyo.limits import DEFAULT_RATE_LIMITS
from mparticle_klaviyo.mapping.settings import EXTERNAL_ID_IDENTITY_NAMES, parse_external_id_identity, squash

ENV_PREFIX = "MPARTICLE_KLAVIYO_CONNECTIONS__"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# Ingest credentials pick the connection a request belongs to: two connections must not share one.
UNIQUE_CREDENTIALS = ("firehose_token", "events_api_key", "webhook_authorization")
# Events API requests carry key and secret together: one without the other cannot authenticate.
PAIRED_CREDENTIALS = (("events_api_key", "events_api_secret"), ("events_api_secret", "events_api_key"))
CREDENTIALS = (
    "public_api_key",
    "private_api_key",
    "firehose_token",
    "events_api_key",
    "events_api_secret",
    "webhook_authorization",
)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def env_variable(connection: str, key: str) -> str:
    """The environment variable that sets ``key`` of ``connection``."""
    return f"{ENV_PREFIX}{connection.upper()}__{key.upper()}"


def closest(name: str, known: Collection[str]) -> str | None:
    """The known name most like ``name`` (a likely misspelling), or None when none is close."""
    matches = difflib.get_close_matches(name, list(known), n=1)
    return matches[0] if matches else None


def error_message(error: Mapping[str, Any], known: Collection[str] = (), connection: str | None = None) -> str:
    """One pydantic error as our message: the validator's own text, or a hint; never the input.

    ``known`` are the table's keys (to suggest one for a misspelt key); ``connection`` names the
    connection whose environment variable could supply a missing key.
    """
    kind = error["type"]
    loc = tuple(error["loc"])
    if kind == "missing":
        hint = f" (or set {env_variable(connection, str(loc[0]))})" if connection and len(loc) == 1 else ""
        return "is required" + hint
    if kind == "extra_forbidden":
        match = closest(str(loc[-1]), known) if len(loc) == 1 else None
        return "is not a known setting" + (f" (did you mean {match}?)" if match else "")
    return validation_message(error)


def location(loc: tuple[int | str, ...]) -> str:
    """A pydantic location as TOML-style dotted keys: ``rate_limits."POST /client/events"``."""
    parts = [part for part in loc if part != "[key]"]
    return ".".join(str(part) if _BARE_KEY.match(str(part)) else _quoted(str(part)) for part in parts)


def validation_problems(
    where: str, exc: ValidationError, known: Collection[str], connection: str | None = None
) -> list[str]:
    """One ``where.key: message`` line per error of ``exc``."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        at = location(tuple(error["loc"]))
        problems.append(f"{where}{'.' + at if at else ''}: {error_message(error, known, connection)}")
    return problems


def pairing_problems(where: str, name: str, table: Mapping[str, Any]) -> list[str]:
    """An Events API key without its secret, or the reverse, naming the missing one."""
    return [
        f"{where}.{missing}: is required with {present} (or set {env_variable(name, missing)})"
        for present, missing in PAIRED_CREDENTIALS
        if present in table and missing not in table
    ]


def shared_credential_problems(tables: Mapping[str, Any], where: str) -> list[str]:
    """Connections with the same ingest credential, named (the credential's value never is)."""
    problems = []
    for key in UNIQUE_CREDENTIALS:
        holders: dict[str, list[str]] = {}
        for name, table in tables.items():
            value = table.get(key) if isinstance(table, dict) else None
            if isinstance(value, str) and value.strip():  # blank ones are reported on their own
                holders.setdefault(value, []).append(name)
        problems += [
            f"{where}: connections {', '.join(sorted(names))} have the same {key}: give each connection its own"
            for names in holders.values()
            if len(names) > 1
        ]
    return problems


def check_not_blank(value: str) -> str:
    """A credential or name: anything but empty or whitespace only."""
    if not value.strip():
        raise ValueError("must not be empty")
    return value


def check_log_level(value: str) -> str:
    """A standard logging level in any case, returned in lower case."""
    if value.lower() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
    return value.lower()


MAX_WORKERS = 64


def check_worker_count(value: object) -> object:
    """``"auto"`` or a whole number of worker processes from 0 to ``MAX_WORKERS``."""
    if value == "auto" or (type(value) is int and 0 <= value <= MAX_WORKERS):
        return value
    raise ValueError(f'must be "auto" or a whole number from 0 to {MAX_WORKERS}')


def check_klaviyo_url(value: str) -> str:
    """An http(s) server's address, ``scheme://host[:port]``, returned without a trailing slash."""
    problem = _url_problem(value)
    if problem:
        raise ValueError(problem)
    return value.rstrip("/")


def _url_problem(value: str) -> str | None:
    # The parser's own messages are never passed on: they may quote the URL.
    if not value.lower().startswith(("http://", "https://")):
        return "must start with http:// or https://"
    if any(char.isspace() or not char.isprintable() for char in value):
        return "must not contain whitespace or control characters"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port raises ValueError when it is not 0..65535
    except ValueError:
        return "has an invalid port"
    if parts.username is not None or parts.password is not None:
        return "must not contain a user name or password"
    if not parts.hostname:
        return "must name a host, e.g. https://a.klaviyo.com"
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        return "must not have a query or fragment"
    if parts.path not in ("", "/"):
        # Request paths are appended to it: https://a.klaviyo.com/api would send to /api/api/...
        return "must be the server's address only (scheme://host[:port]), without a path"
    return None


def check_endpoint(value: str) -> str:
    """One of the Klaviyo endpoints that have a rate limit (a close one is suggested)."""
    if value not in DEFAULT_RATE_LIMITS:
        match = closest(value, DEFAULT_RATE_LIMITS)
        hint = f"did you mean {_quoted(match)}?" if match else "one of " + ", ".join(map(_quoted, DEFAULT_RATE_LIMITS))
        raise ValueError(f"is not a Klaviyo endpoint we send to ({hint})")
    return value


def check_external_id_identity(value: str) -> str | None:
    """The identity sent as Klaviyo's ``external_id`` as its key; blank leaves it unset.

    A misspelling gets the closest identity name suggested (only known names are ever quoted).
    """
    if not value.strip():
        return None
    try:
        return parse_external_id_identity(value)
    except ValueError as exc:
        by_key = {squash(name): name for name in EXTERNAL_ID_IDENTITY_NAMES}
        match = closest(squash(value), by_key)
        raise ValueError(f"{exc} (did you mean {by_key[match]}?)" if match else str(exc)) from None


def check_rate_pair(value: Any) -> tuple[int, int]:
    """``[per_second, per_minute]``: whole numbers, each at least 1, per second at most per minute."""
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(_whole(v) for v in value):
        raise ValueError("must be [per_second, per_minute], two whole numbers")
    per_second, per_minute = value
    if per_second < 1 or per_minute < 1:
        raise ValueError("each limit must be at least 1")
    if per_second > per_minute:
        # Every second lies within a minute: such a pair is a typo or swapped.
        raise ValueError("per_second must not exceed per_minute")
    return per_second, per_minute


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Per-item types for ``rate_limits``, so that each endpoint is checked and reported on its own.
Endpoint = Annotated[str, AfterValidator(check_endpoint)]
RatePair = Annotated[tuple[int, int], BeforeValidator(check_rate_pair)]
