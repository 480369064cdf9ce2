"""mParticle's own Python SDK (PyPI ``mparticle``) -> its real HTTP request -> replay -> emulator.

The SDK posts to a loopback capture server (standing in for mParticle's Events API); the bodies
it sent are written to files exactly as received and replayed into the strict emulator.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

import mparticle
from mparticle_klaviyo.klaviyo.emulator import RunningEmulator
from tests.e2e.helpers import emulator_state, run_cli, with_emulator, write_config


def sdk_batch(user: int) -> Any:
    """A batch built only with the SDK's own models: all six supported event types."""
    batch = mparticle.Batch()
    batch.environment = "development"
    identities = mparticle.UserIdentities()
    identities.email = f"sdk{user}@example.com"
    identities.mobile_number = f"+1617555{user:04d}"
    batch.user_identities = identities
    batch.user_attributes = {"$FirstName": "Sdk", "$Country": "US", "tier": "gold"}
    custom = mparticle.AppEvent(f"Custom {user}", "navigation")
    custom.custom_attributes = {"$value": "2.5", "$event_id": f"sdk-evt-{user}", "k": "v"}
    product = mparticle.Product()
    product.name, product.id, product.price, product.quantity = "Gear", "SKU-1", 5.0, 2
    action = mparticle.ProductAction("purchase")
    action.transaction_id, action.total_amount, action.products = f"T-{user}", 10.0, [product]
    screen = mparticle.ScreenViewEvent()
    screen.screen_name = "Home"
    transition = mparticle.ApplicationStateTransitionEvent()
    transition.application_transition_type = "application_background"
    end = mparticle.SessionEndEvent()
    end.session_duration_ms = 1000
    events = [mparticle.SessionStartEvent(), custom, mparticle.CommerceEvent(action), screen, transition, end]
    for n, event in enumerate(events):
        event.timestamp_unixtime_ms = 1_764_000_000_000 + user * 100 + n
        event.source_message_id = f"sdk-{user}-{n}"
    batch.events = events
    return batch


async def capture_sdk_requests(tmp_path: Path) -> list[Path]:
    """Run the SDK against a loopback server; return one file per request body it sent."""
    bodies: list[tuple[str, bytes]] = []

    async def record(request: web.Request) -> web.Response:
        bodies.append((request.path, await request.read()))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/v2/events", record)
    app.router.add_post("/v2/bulkevents", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        await asyncio.to_thread(_send_with_sdk, f"http://127.0.0.1:{port}/v2")
    finally:
        await runner.cleanup()
    paths = []
    for n, (path, body) in enumerate(bodies):
        file = tmp_path / f"sdk-{n}{'-bulk' if path.endswith('bulkevents') else ''}.json"
        file.write_bytes(body)
        paths.append(file)
    return paths


def _send_with_sdk(host: str) -> None:
    configuration = mparticle.Configuration()
    configuration.api_key, configuration.api_secret = "example-key", "example-secret"
    configuration.host = host  # set before EventsApi is created: it copies the host
    api = mparticle.EventsApi(configuration)
    api.upload_events(sdk_batch(1))
    api.bulk_upload_events([sdk_batch(2), sdk_batch(3)])


def test_batches_sent_by_mparticles_python_sdk_are_replayed_into_the_emulator(tmp_path: Path) -> None:
    async def scenario(emulator: RunningEmulator) -> None:
        files = await capture_sdk_requests(tmp_path)
        assert len(files) == 2
        config = write_config(tmp_path, emulator.url)
        result = await run_cli("replay", *map(str, files), "--config", str(config), cwd=tmp_path)
        state = await emulator_state(emulator)
        assert result.code == 0, result.stdout + result.stderr
        # 6 events per batch, the purchase adds one Ordered Product: 7 Klaviyo events x 3 users.
        assert len(state["events"]) == 21
        metrics = sorted({e["metric"] for e in state["events"]})
        assert metrics == sorted(
            [
                "Session Start",
                "Custom 1",
                "Custom 2",
                "Custom 3",
                "Placed Order",
                "Ordered Product",
                "Screen View",
                "Application Background",
                "Session End",
            ]
        )
        custom = next(e for e in state["events"] if e["metric"] == "Custom 2")
        assert (custom["unique_id"], custom["value"]) == ("sdk-evt-2", 2.5)
        assert custom["profile"]["phone_number"] == "+16175550002"

    with_emulator(scenario)


def test_map_prints_the_requests_for_sdk_batches(tmp_path: Path) -> None:
    async def scenario(emulator: RunningEmulator) -> None:
        files = await capture_sdk_requests(tmp_path)
        config = write_config(tmp_path, emulator.url)
        result = await run_cli("map", *map(str, files), "--config", str(config), cwd=tmp_path)
        lines = [json.loads(line) for line in result.stdout.splitlines()]
        assert result.code == 0, result.stderr
        assert [line["kind"] for line in lines] == ["request"] * 21
        assert all(line["path"] == "/client/events?company_id=***" for line in lines)

    with_emulator(scenario)
