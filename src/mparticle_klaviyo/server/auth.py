"""Which connection an ingest request belongs to, by its credentials (compared in constant time)."""

from __future__ import annotations

import base64
import hmac

from mparticle_klaviyo.config import Connection


class AuthError(Exception):
    """Missing (401) or wrong (403) credentials."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _equal(given: str, expected: str) -> bool:
    # Header values that are not UTF-8 reach us with surrogate escapes: compare their bytes.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape"))


def firehose_connection(header: str | None, connections: dict[str, Connection]) -> Connection:
    """``Authorization: Token <token>``: the connection whose ``firehose_token`` it is."""
    if not header:
        raise AuthError(401, "missing Authorization header (expected 'Token <token>')")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "token" or not token.strip():
        raise AuthError(401, "Authorization must be 'Token <token>'")
    found = None
    for connection in connections.values():
        expected = connection.settings.firehose_token
        # Compare against every configured token so timing says nothing about which matched.
        if expected is not None and _equal(token.strip(), expected.get_secret_value()):
            found = connection
    if found is None:
        raise AuthError(403, "unknown Firehose token")
    return found


def events_api_connection(header: str | None, connections: dict[str, Connection]) -> Connection:
    """HTTP Basic ``key:secret``, as mParticle's Events API and server SDKs send it."""
    if not header:
        raise AuthError(401, "missing Authorization header (expected HTTP Basic key:secret)")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise AuthError(401, "Authorization must be HTTP Basic key:secret")
    try:
        key, sep, secret = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except ValueError:  # binascii.Error, UnicodeDecodeError, or non-ASCII characters
        raise AuthError(401, "Authorization is not valid base64 of key:secret") from None
    if not sep or not key or not secret:
        # Never a match, whatever is configured: an empty key or secret authenticates nobody.
        raise AuthError(401, "Authorization must be base64 of a non-empty key:secret")
    found = None
    for connection in connections.values():
        expected_key = connection.settings.events_api_key
        expected_secret = connection.settings.events_api_secret
        if expected_key is None or expected_secret is None:
            continue
        if _equal(key, expected_key.get_secret_value()) & _equal(secret, expected_secret.get_secret_value()):
            found = connection
    if found is None:
        raise AuthError(403, "unknown API key or wrong secret")
    return found


def webhook_connection(name: str, header: str | None, connections: dict[str, Connection]) -> Connection:
    """``/webhook/{connection}``: the Authorization header must equal the configured value."""
    connection = connections.get(name)
    expected = connection.settings.webhook_authorization if connection else None
    if connection is None or expected is None:
        # Same answer for "no such connection" and "webhook not enabled": names are not secret,
        # but there is nothing to gain from telling them apart.
        raise AuthError(403, f"no webhook input is configured for connection {name!r}")
    if not header:
        raise AuthError(401, "missing Authorization header")
    if not _equal(header, expected.get_secret_value()):
        raise AuthError(403, "wrong Authorization header")
    return connection
