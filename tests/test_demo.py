"""``make demo``'s program: it must run start to finish against the in-process emulator."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from rich.console import Console

from mparticle_klaviyo.demo import demo_connection, example_files, run_demo


def test_the_demo_replays_the_examples_twice_and_exits_zero(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no mparticle-klaviyo.toml here: the built-in connection is used
    output = io.StringIO()
    code = asyncio.run(run_demo(Console(file=output, width=200)))
    text = output.getvalue()
    assert code == 0, text
    assert "17 events delivered, then 17 again on replay; the emulator recorded 17 and dropped 17 duplicates" in text
    assert "unsupported_platform" in text


def test_the_bundled_examples_cover_every_input_shape() -> None:
    names = {p.name for p in example_files()}
    assert names == {"firehose_request.json", "ios_shopper.json", "not_forwarded.jsonl", "webhook_outbound.jsonl"}


def test_the_demo_uses_the_repositorys_demo_connection_when_run_from_the_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    connection = demo_connection("http://127.0.0.1:1")
    assert connection.name == "demo"
    assert connection.klaviyo_url == "http://127.0.0.1:1"
    assert connection.mapping.consent_mapping == {"email_marketing": "email", "sms_marketing": "sms"}
