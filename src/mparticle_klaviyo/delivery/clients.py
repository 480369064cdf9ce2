"""A Klaviyo client for a configured connection."""

from __future__ import annotations

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.klaviyo.client import KlaviyoClient


def client_for(connection: Connection, *, pool_size: int, timeout_s: float = 10.0) -> KlaviyoClient:
    """A Klaviyo client with the connection's keys, URL and revision."""
    return KlaviyoClient(
        public_key=connection.public_key,
        private_key=connection.private_key,
        base_url=connection.klaviyo_url,
        revision=connection.revision,
        timeout_s=timeout_s,
        pool_size=pool_size,
    )
