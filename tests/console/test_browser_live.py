"""The Live stream in a real browser against ``serve`` and the emulator: events appear, one opens."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from playwright.async_api import expect

from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig
from tests.console.browser import chromium_tab, require_chromium
from tests.console.helpers import PASSWORD
from tests.console.test_browser import WAIT_MS, log_in
from tests.service.e2e_helpers import (
    FAST_LIMITS,
    basic_auth,
    custom_event,
    post_bulk,
    recording_emulator,
    run_async,
    serving,
    user_batch,
)


async def post_broken(session: aiohttp.ClientSession, url: str) -> int:
    """A batch whose ``events`` is not a list: refused with a pointer."""
    headers = {"Authorization": basic_auth()}
    async with session.post(f"{url}/v2/events", json={"events": "nope"}, headers=headers) as response:
        return response.status


def test_an_operator_sees_traffic_arrive_live_and_opens_a_request_side_by_side(tmp_path: Path) -> None:
    require_chromium()

    async def go() -> None:
        once_503 = {"path": "/client/events", "status": 503, "count": 1}
        async with (
            recording_emulator(EmulatorConfig(rate_limits=dict(FAST_LIMITS)), faults=[once_503]) as emulator,
            serving(tmp_path, emulator.url, service={"console_password": PASSWORD}) as serve,
        ):
            async with chromium_tab() as tab, aiohttp.ClientSession() as session:
                page = tab.page
                await log_in(tab, serve.url)
                await page.get_by_role("link", name="Live stream").click()
                await expect(page.get_by_role("heading", name="Live stream")).to_be_visible()
                await expect(page.locator("#live-stream")).to_contain_text("nothing yet")
                batches = [user_batch("jane.doe", [custom_event("m-1"), custom_event("m-2", name="Viewed")])]
                assert await post_bulk(session, serve.url, batches) == 202
                assert await post_broken(session, serve.url) == 400
                stream = page.locator("#live-stream")
                # No reload: the page polls, and the rows arrive on their own.
                await expect(stream).to_contain_text("accepted", timeout=WAIT_MS)
                await expect(stream).to_contain_text("refused", timeout=WAIT_MS)
                await expect(stream).to_contain_text("retried", timeout=WAIT_MS)
                await expect(stream).to_contain_text("delivered", timeout=WAIT_MS)
                await expect(stream).not_to_contain_text("jane.doe@example.com")
                await tab.screenshot("live")

                # By keyboard: focus the newest delivered request's link and press Enter.
                row = stream.locator("tr", has_text="delivered").first
                await row.get_by_role("link").focus()
                await page.keyboard.press("Enter")
                await expect(page.get_by_role("heading", name="mParticle input")).to_be_visible()
                await expect(page.get_by_role("heading", name="Klaviyo request")).to_be_visible()
                sides = page.locator(".sides")
                await expect(sides).to_contain_text("POST /client/events")
                await expect(sides).to_contain_text("j***@e***.com")
                assert "jane.doe@example.com" not in await page.content()
                await tab.screenshot("live-entry")
                assert tab.errors == []
            assert PASSWORD not in (tmp_path / "serve.log").read_text()

    run_async(go(), timeout_s=120)
