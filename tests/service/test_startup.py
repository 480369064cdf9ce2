"""``serve``'s start line: each connection's inputs, mode and Klaviyo host, and the store; no secret."""

from __future__ import annotations

from pathlib import Path

from mparticle_klaviyo.service.startup import serving_fields
from mparticle_klaviyo.store.location import parse_store
from tests.service.live import CONNECTIONS, make_config

SECRET_VALUES = [str(value) for table in CONNECTIONS.values() for key, value in table.items() if key != "list_id"]


def test_the_start_line_names_each_connections_inputs_mode_and_klaviyo_host(tmp_path: Path) -> None:
    connections = {
        "acme": CONNECTIONS["acme"],
        "hook": {
            "public_api_key": "HOOK01",
            "private_api_key": "pk_x",
            "webhook_authorization": "Bearer w",
            "klaviyo_url": "http://127.0.0.1:8788",
        },
    }
    config = make_config(tmp_path / "jobs.sqlite3", connections)
    fields = serving_fields(config, str(tmp_path / "jobs.sqlite3"))
    assert fields == {
        "connections": {
            "acme": {"mode": "client", "inputs": ["firehose", "events_api", "webhook"], "klaviyo": "a.klaviyo.com"},
            "hook": {"mode": "server", "inputs": ["webhook"], "klaviyo": "127.0.0.1:8788"},
        },
        "store": str(tmp_path / "jobs.sqlite3"),
    }


def test_the_start_line_holds_no_key_token_or_store_password(tmp_path: Path) -> None:
    location = parse_store("postgresql://mpk:hunter2secret@db.internal:5432/jobs")
    fields = serving_fields(make_config(tmp_path / "jobs.sqlite3"), location.shown)
    text = repr(fields)
    assert "db.internal" in text
    assert [secret for secret in [*SECRET_VALUES, "hunter2secret"] if secret in text] == []
