"""``mparticle-klaviyo check``: does Klaviyo accept each connection's keys, for what it will send?

The public key (company id) is checked for its format only: the client API has no call that
proves it without recording data. A private key is proved per endpoint the connection will use
(bulk events, bulk subscriptions when consents are mapped, bulk unsubscriptions with
``consent_removal``, deletion jobs with ``forward_erasure``) with an empty request
(``klaviyo/check.py``): 400 means accepted, 401 refused, 403 a scope missing. ``serve`` logs the
same lines at start and starts anyway: ingest is durable, and delivery pauses on a 401/403.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping

import msgspec

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.delivery.lane import Transport
from mparticle_klaviyo.delivery.payloads import (
    BULK_EVENTS,
    BULK_SUBSCRIPTIONS,
    BULK_UNSUBSCRIPTIONS,
    DATA_PRIVACY_DELETIONS,
)
from mparticle_klaviyo.klaviyo.check import SCOPES, Accepted, Refusal, Verdict, judge, probe_request
from mparticle_klaviyo.mapping.consent import SUBSCRIPTION_CHANNELS

log = logging.getLogger("mparticle_klaviyo.serve")
# "your 6-character company ID, also known as a site ID", e.g. ABC123 (Klaviyo's auth guide).
_PUBLIC_KEY = re.compile(r"[A-Za-z0-9]{6}")


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One checked credential: ``ok`` True (accepted), False (refused) or None (no answer)."""

    connection: str
    ok: bool | None
    text: str

    def line(self) -> str:
        """``<connection>: <text>``."""
        return f"{self.connection}: {self.text}"


def features(connection: Connection) -> dict[str, str]:
    """What a connection's private key will be used for: feature -> endpoint (none in client mode)."""
    if not connection.server_mode:
        return {}
    used = {"events": f"POST {BULK_EVENTS}"}
    if any(channel in SUBSCRIPTION_CHANNELS for channel in connection.settings.consent_mapping.values()):
        used["consent subscriptions"] = f"POST {BULK_SUBSCRIPTIONS}"
    if connection.settings.consent_removal:
        used["consent removal"] = f"POST {BULK_UNSUBSCRIPTIONS}"
    if connection.settings.forward_erasure:
        used["erasure"] = f"POST {DATA_PRIVACY_DELETIONS}"
    return used


def public_key_finding(connection: Connection) -> Finding:
    """The public key's format: 6 letters and digits; never shown."""
    key = connection.public_key.reveal()
    if _PUBLIC_KEY.fullmatch(key):
        return Finding(connection=connection.name, ok=True, text="public key: ok (6 letters and digits)")
    why = "a private key (pk_...)" if key.startswith("pk_") else f"{len(key)} characters"
    text = (
        f"public key: refused: it is {why}, but Klaviyo's public key (site id, company id) is 6 letters "
        "and digits, e.g. ABC123"
    )
    return Finding(connection=connection.name, ok=False, text=text)


async def check_connection(connection: Connection, client: Transport) -> list[Finding]:
    """Every finding about ``connection``'s keys; asks Klaviyo only about a private key."""
    findings = [public_key_finding(connection)]
    used = features(connection)
    if not used:
        findings.append(Finding(connection=connection.name, ok=True, text="private key: none (client mode)"))
        return findings
    verdicts = await asyncio.gather(*(_probe(client, endpoint) for endpoint in used.values()))
    for (feature, endpoint), verdict in zip(used.items(), verdicts, strict=True):
        findings.append(_finding(connection, feature, endpoint, verdict))
    return findings


async def _probe(client: Transport, endpoint: str) -> Verdict:
    return judge(endpoint, await client.send(probe_request(endpoint)))


def _finding(connection: Connection, feature: str, endpoint: str, verdict: Verdict) -> Finding:
    scopes = ", ".join(SCOPES.get(endpoint, ()))
    subject = f"private key for {feature} ({endpoint}, needs {scopes})"
    if isinstance(verdict, Accepted):
        return Finding(connection=connection.name, ok=True, text=f"{subject}: ok")
    if isinstance(verdict, Refusal):
        return Finding(connection=connection.name, ok=False, text=f"{subject}: refused: {_refusal_text(verdict)}")
    detail = f" ({verdict.detail})" if verdict.detail else ""
    text = f"{subject}: unknown: no answer from Klaviyo at {connection.klaviyo_url}: {verdict.reason}{detail}"
    return Finding(connection=connection.name, ok=None, text=text)


def _refusal_text(refusal: Refusal) -> str:
    said = f"Klaviyo answered {refusal.status} {refusal.code}" + (f": {refusal.detail}" if refusal.detail else "")
    if refusal.status == 403:
        scopes = ", ".join(SCOPES.get(refusal.endpoint, ()))
        return f"{said}; give the key the scopes {scopes}" if scopes else said
    return f"{said}; the key is revoked, mistyped or not a private key"


async def check_all(connections: Mapping[str, Connection], clients: Mapping[str, Transport]) -> list[Finding]:
    """The findings of every connection, in name order (the connections are checked at once)."""
    names = sorted(connections)
    found = await asyncio.gather(*(check_connection(connections[name], clients[name]) for name in names))
    return [finding for findings in found for finding in findings]


async def log_checks(connections: Mapping[str, Connection], clients: Mapping[str, Transport]) -> None:
    """``serve``'s start: one log line per finding (INFO ok, ERROR refused, WARNING no answer)."""
    for finding in await check_all(connections, clients):
        level = {True: logging.INFO, False: logging.ERROR, None: logging.WARNING}[finding.ok]
        log.log(level, "credentials check: %s", finding.text, extra={"connection": finding.connection})
