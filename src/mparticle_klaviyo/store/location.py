"""Where the job store lives: ``[service] store`` is a SQLite file path or a PostgreSQL URL.

A URL may carry a password (``postgresql://user:pw@host/db`` or ``?password=pw``). It never
leaves this module in the clear except through ``PostgresLocation.url.reveal()``, which only the
PostgreSQL store calls to connect: ``shown`` is the URL with the password replaced by ``***``,
and ``scrub`` removes it from any text (a driver's error may quote part of the URL).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import msgspec

from mparticle_klaviyo.secret import Secret

POSTGRES_SCHEMES = ("postgresql", "postgres")
# Anything that looks like "scheme://": a URL we do not speak, not a file name.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
HIDDEN = "***"


class SqliteLocation(msgspec.Struct, frozen=True):
    """The embedded store: one SQLite file (relative to the working directory)."""

    path: Path

    @property
    def shown(self) -> str:
        """How messages name this store."""
        return str(self.path)

    @property
    def local_name(self) -> str:
        """A path on this machine that files about this store sit beside (``<name>.resume``)."""
        return str(self.path)


class PostgresLocation(msgspec.Struct, frozen=True):
    """A PostgreSQL database, by libpq URL; its password never shows."""

    url: Secret
    shown: str
    secrets: tuple[str, ...]

    @property
    def local_name(self) -> str:
        """A name in the working directory for files about this store (``<name>.resume``), without credentials."""
        parts = urlsplit(self.url.reveal())
        where = (parts.netloc.rpartition("@")[2] + parts.path).strip("/")
        return "mparticle-klaviyo-" + (re.sub(r"[^A-Za-z0-9._-]+", "-", where) or "postgresql")

    def scrub(self, text: str) -> str:
        """``text`` with every secret of the URL replaced by ``***``."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, HIDDEN)
        return text

    def __repr__(self) -> str:
        return f"PostgresLocation({self.shown!r})"


StoreLocation = SqliteLocation | PostgresLocation


def is_url(value: str) -> bool:
    """Whether ``value`` is written as a URL (``scheme://...``) rather than a file path."""
    return _URL.match(value.strip()) is not None


def parse_store(value: str) -> StoreLocation:
    """The store that ``[service] store`` names; raises ValueError (never quoting it) if it is neither kind."""
    text = value.strip()
    if not is_url(text):
        return SqliteLocation(Path(text))
    # Exactly as libpq spells them: it does not take "PostgreSQL://" for a URL.
    if text.split("://", 1)[0] not in POSTGRES_SCHEMES:
        raise ValueError("must be a SQLite file path or a postgresql:// URL (no other kind of URL is supported)")
    secrets = _secrets(text)
    return PostgresLocation(url=Secret(text), shown=_redact(text), secrets=secrets)


def check_store(value: str) -> str:
    """The ``store`` setting if ``parse_store`` accepts it (a pydantic validator); ValueError otherwise."""
    parse_store(value)
    return value


def _secrets(url: str) -> tuple[str, ...]:
    """The password of ``url`` (in the user part or as ``?password=``), raw and percent-decoded."""
    found: set[str] = set()
    userinfo = urlsplit(url).netloc.rpartition("@")[0]
    if ":" in userinfo:
        found.add(userinfo.split(":", 1)[1])
    for item in urlsplit(url).query.split("&"):
        name, _, value = item.partition("=")
        if name.lower() == "password":
            found.add(value)
    return tuple(sorted({form for secret in found for form in (secret, unquote(secret)) if form}))


def _redact(url: str) -> str:
    """``url`` with its password replaced by ``***``."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":" + HIDDEN
    query = "&".join(
        f"{item.partition('=')[0]}={HIDDEN}" if item.partition("=")[0].lower() == "password" else item
        for item in parts.query.split("&")
    )
    shown = f"{parts.scheme}://{userinfo}{at}{hosts}{parts.path}"
    return f"{shown}?{query}" if parts.query else shown
