"""What ``serve``'s start line says: per connection its inputs, mode and Klaviyo host; the store.

Names and hosts only: never a key, token, secret or a store password (the store is given as
``StoreLocation.shown``, the URL with its password replaced).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from mparticle_klaviyo.config import Config, Connection


def enabled_inputs(connection: Connection) -> list[str]:
    """The ingest inputs ``connection`` takes: each is enabled by setting its credentials."""
    settings = connection.settings
    inputs = {
        "firehose": settings.firehose_token is not None,
        "events_api": settings.events_api_key is not None and settings.events_api_secret is not None,
        "webhook": settings.webhook_authorization is not None,
    }
    return [name for name, enabled in inputs.items() if enabled]


def klaviyo_host(connection: Connection) -> str:
    """``host[:port]`` of the connection's Klaviyo URL (the config refuses user info in it)."""
    parts = urlsplit(connection.klaviyo_url)
    host = parts.hostname or ""
    return f"{host}:{parts.port}" if parts.port is not None else host


def serving_fields(config: Config, store_shown: str) -> dict[str, object]:
    """The start line's fields (beside the URL): each connection's inputs, mode and host; the store."""
    connections = {
        name: {
            "mode": "server" if connection.server_mode else "client",
            "inputs": enabled_inputs(connection),
            "klaviyo": klaviyo_host(connection),
        }
        for name, connection in sorted(config.connections.items())
    }
    return {"connections": connections, "store": store_shown}
