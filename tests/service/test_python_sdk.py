"""mParticle's own Python SDK sends to a running ``serve``; its batches reach the Klaviyo emulator."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from mparticle.rest import ApiException

import mparticle
from mparticle_klaviyo.klaviyo.emulator import RunningEmulator
from tests.service.served import Served, wait_for_events, with_emulator, write_config

KEY, SECRET = "sdk-events-key", "sdk-events-secret-31337"


def sdk_batch(user: int) -> Any:
    """A batch built with the SDK's models: a custom event, a screen view and a one-product purchase."""
    batch = mparticle.Batch()
    batch.environment = "development"
    identities = mparticle.UserIdentities()
    identities.email = f"sdk-user-{user}@example.com"
    batch.user_identities = identities
    batch.user_attributes = {"$FirstName": f"User{user}"}
    custom = mparticle.AppEvent(f"Tapped {user}", "navigation")
    custom.custom_attributes = {"$event_id": f"tap-{user}", "button": "buy"}
    screen = mparticle.ScreenViewEvent()
    screen.screen_name = "Cart"
    product = mparticle.Product()
    product.id, product.name, product.price, product.quantity = f"SKU-{user}", "Lamp", 12.5, 1
    action = mparticle.ProductAction("purchase")
    action.transaction_id, action.total_amount, action.products = f"T-{user}", 12.5, [product]
    events = [custom, screen, mparticle.CommerceEvent(action)]
    for n, event in enumerate(events):
        event.timestamp_unixtime_ms = int(time.time() * 1000) - 1000 + n
        event.source_message_id = f"sdk-{user}-{n}"
    batch.events = events
    return batch


def events_api(url: str, secret: str = SECRET) -> Any:
    configuration = mparticle.Configuration()
    configuration.api_key, configuration.api_secret = KEY, secret
    configuration.host = f"{url}/v2"  # before EventsApi: the client copies the host when created
    return mparticle.EventsApi(configuration)


def send_with_sdk(url: str) -> None:
    api = events_api(url)
    api.upload_events(sdk_batch(1))
    api.bulk_upload_events([sdk_batch(2), sdk_batch(3)])


def connection(emulator: RunningEmulator) -> dict[str, Any]:
    return {
        "public_api_key": "DEMO01",
        "klaviyo_url": emulator.url,
        "events_api_key": KEY,
        "events_api_secret": SECRET,
    }


def test_batches_the_sdk_sends_to_serve_are_delivered_to_the_emulator(tmp_path: Path) -> None:
    async def scenario(emulator: RunningEmulator) -> dict[str, Any]:
        served = await Served.start(write_config(tmp_path, {"sdk": connection(emulator)}))
        try:
            await asyncio.to_thread(send_with_sdk, served.url)
            # Per batch: custom event, screen view, Placed Order and one Ordered Product.
            return await wait_for_events(emulator, 12)
        finally:
            assert await served.stop() == 0

    state = with_emulator(scenario)
    events = state["events"]
    assert len(events) == 12, state["rejected"]
    assert sorted(e["metric"] for e in events if e["metric"].startswith("Tapped")) == [
        "Tapped 1",
        "Tapped 2",
        "Tapped 3",
    ]
    assert {e["unique_id"] for e in events if e["metric"] == "Tapped 2"} == {"tap-2"}
    assert {e["profile"]["email"] for e in events} == {f"sdk-user-{n}@example.com" for n in (1, 2, 3)}
    assert sum(e["metric"] == "Placed Order" for e in events) == 3
    assert state["rejected"] == []


def test_the_sdk_sees_403_for_a_wrong_secret_and_nothing_is_delivered(tmp_path: Path) -> None:
    def send_wrong(url: str) -> int:
        with pytest.raises(ApiException) as error:
            events_api(url, secret="not-the-secret").upload_events(sdk_batch(9))
        status: int = error.value.status
        return status

    async def scenario(emulator: RunningEmulator) -> tuple[int, int]:
        served = await Served.start(write_config(tmp_path, {"sdk": connection(emulator)}))
        try:
            status = await asyncio.to_thread(send_wrong, served.url)
        finally:
            assert await served.stop() == 0
        state = await wait_for_events(emulator, 1, timeout=0.5)
        return status, state["events_recorded"]

    assert with_emulator(scenario) == (403, 0)
