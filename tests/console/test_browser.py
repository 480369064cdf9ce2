"""The console in a real browser against ``serve`` and the emulator: log in, watch, reveal, redrive, upload, map."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
from playwright.async_api import Locator, expect

from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig
from tests.console.browser import Tab, chromium_tab, require_chromium
from tests.console.helpers import PASSWORD
from tests.service.e2e_helpers import (
    FAST_LIMITS,
    custom_event,
    post_bulk,
    recording_emulator,
    run_async,
    serving,
    user_batch,
    wait_until,
)

WAIT_MS = 15_000


async def log_in(tab: Tab, url: str) -> None:
    """The login form, filled in as a person would."""
    await tab.page.goto(f"{url}/console/")
    await expect(tab.page.get_by_role("heading", name="Log in")).to_be_visible()
    await tab.screenshot("login")
    await tab.page.get_by_label("Console password").fill(PASSWORD)
    await tab.page.get_by_role("button", name="Log in").click()
    await expect(tab.page.get_by_role("heading", name="Overview")).to_be_visible()


def tile(tab: Tab, metric: str) -> Locator:
    """An overview number of connection ``acme``."""
    return tab.page.locator(f'section[data-connection="acme"] .tile[data-metric="{metric}"] b')


def test_an_operator_watches_events_flow_and_redrives_a_dead_letter(tmp_path: Path) -> None:
    require_chromium()

    async def go() -> None:
        async with (
            recording_emulator(EmulatorConfig(rate_limits=dict(FAST_LIMITS))) as emulator,
            serving(tmp_path, emulator.url, service={"console_password": PASSWORD}) as serve,
        ):
            async with chromium_tab() as tab, aiohttp.ClientSession() as session:
                await log_in(tab, serve.url)
                await expect(tile(tab, "received")).to_have_text("0")
                batches = [user_batch("ann", [custom_event("m-1"), custom_event("m-2")])]
                assert await post_bulk(session, serve.url, batches) == 202
                await expect(tile(tab, "received")).to_have_text("2", timeout=WAIT_MS)
                await expect(tile(tab, "delivered")).to_have_text("2", timeout=WAIT_MS)
                await expect(tab.page.locator("#chart polyline").first).to_be_attached(timeout=WAIT_MS)
                # The ring buffer grows: the chart's lines get more points as samples arrive.
                line = tab.page.locator("#chart polyline").first

                async def grown() -> bool:
                    return len((await line.get_attribute("points") or "").split()) > 3

                await wait_until(grown, 15, "the chart to have more than three samples")
                await expect(tab.page.locator("#cluster")).to_contain_text("Single node (SQLite store): this node")
                await tab.screenshot("overview")

                emulator.add_fault({"path": "/client/events", "status": 400, "count": 1})
                assert await post_bulk(session, serve.url, [user_batch("jane.doe", [custom_event("m-3")])]) == 202
                await open_dead_letter(tab, serve.url)
                await redrive_from_detail(tab)

                async def delivered() -> bool:
                    return "m-3" in emulator.unique_ids()

                await wait_until(delivered, 15, "the redriven event at Klaviyo")
                await tab.page.goto(f"{serve.url}/console/dead-letters")
                await expect(tab.page.get_by_text("no dead letters")).to_be_visible()
                await tab.page.goto(f"{serve.url}/console/overview")
                await expect(tile(tab, "delivered")).to_have_text("3", timeout=WAIT_MS)
                assert tab.errors == []
            assert PASSWORD not in (tmp_path / "serve.log").read_text()

    run_async(go(), timeout_s=120)


async def open_dead_letter(tab: Tab, url: str) -> None:
    """The dead-letter list shows the refused job; its detail masks the person's email."""
    page = tab.page
    for _ in range(30):  # the refusal is a dead letter once delivery has tried
        await page.goto(f"{url}/console/dead-letters")
        if await page.locator("tbody tr").count():
            break
        await page.wait_for_timeout(500)
    await expect(page.locator("tbody tr")).to_have_count(1)
    await expect(page.locator("tbody tr")).to_contain_text("http_400")
    await tab.screenshot("dead-letters")
    await page.locator("tbody tr a").first.click()
    await expect(page.get_by_role("heading", name="What today's code would send")).to_be_visible()
    content = await page.content()
    assert "jane.doe@example.com" not in content
    assert "j***@e***.com" in content
    await tab.screenshot("dead-letter")
    await reveal_and_mask_again(tab)


async def reveal_and_mask_again(tab: Tab) -> None:
    """The switch, from the keyboard: this page shows the person's email; the list does not."""
    page = tab.page
    await page.get_by_role("link", name="Show personal data").focus()
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("status")).to_contain_text("Personal data shown")
    assert "jane.doe@example.com" in await page.content()
    await page.get_by_role("link", name="Mask personal data").click()
    await expect(page.get_by_role("link", name="Show personal data")).to_be_visible()
    assert "jane.doe@example.com" not in await page.content()


async def redrive_from_detail(tab: Tab) -> None:
    """Redrive, confirm, done."""
    page = tab.page
    await page.get_by_role("button", name="Redrive this job").click()
    await expect(page.locator(".confirm")).to_contain_text("Redrive 1 dead job(s)")
    await page.get_by_role("button", name="Redrive 1 job(s)").click()
    await expect(page.get_by_role("status")).to_have_text("Redrove 1 job(s).")


def test_the_playground_maps_a_paste_and_an_uploaded_file_and_sends_nothing(tmp_path: Path) -> None:
    require_chromium()

    async def go() -> None:
        async with (
            recording_emulator(EmulatorConfig(rate_limits=dict(FAST_LIMITS))) as emulator,
            serving(tmp_path, emulator.url, service={"console_password": PASSWORD}) as serve,
            chromium_tab() as tab,
        ):
            await log_in(tab, serve.url)
            await tab.page.get_by_role("link", name="Mapping playground").click()
            await map_a_paste(tab)
            await refuse_a_file_too_large(tab, tmp_path)
            await map_an_upload(tab, tmp_path)
            assert emulator.unique_ids() == []
            assert tab.errors == []

    run_async(go(), timeout_s=120)


async def map_a_paste(tab: Tab) -> None:
    """A pasted batch: one request and one drop with its reason, emails masked."""
    crash = {"event_type": "crash_report", "data": {"source_message_id": "m-10"}}
    batch = user_batch("pat", [custom_event("m-9"), crash])
    await tab.page.get_by_label("mParticle batch file").fill(json.dumps(batch, indent=2))
    await tab.page.get_by_role("button", name="Map").click()
    summary = tab.page.locator("#summary")
    await expect(summary).to_have_text("1 request(s), 1 drop(s) or warning(s), 0 error(s)")
    lines = tab.page.locator("#lines")
    await expect(lines).to_contain_text("/client/events")
    await expect(lines).to_contain_text("unsupported_event_type")
    await expect(lines).to_contain_text("p***@e***.com")


async def refuse_a_file_too_large(tab: Tab, folder: Path) -> None:
    """A file over the playground's budget is refused in the page, naming the limit."""
    big = folder / "huge.jsonl"
    big.write_bytes(b" " * (1024 * 1024 + 1))
    await tab.page.get_by_label("Load a file").set_input_files(big)
    await expect(tab.page.locator("#file-status")).to_have_text(
        "huge.jsonl is 1,048,577 bytes: the playground maps at most 1,048,576 bytes."
    )


async def map_an_upload(tab: Tab, folder: Path) -> None:
    """JSON lines of batches, loaded from a file: read as ``map`` reads it, a bad line located."""
    export = folder / "export.jsonl"
    docs = [user_batch("sam", [custom_event("m-11")]), user_batch("kim", [custom_event("m-12")]), {"events": 3}]
    export.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    await tab.page.get_by_label("Load a file").set_input_files(export)
    await expect(tab.page.locator("#file-status")).to_contain_text("Loaded export.jsonl")
    await expect(tab.page.get_by_label("mParticle batch file")).to_have_value(export.read_text())
    await tab.page.get_by_role("button", name="Map").click()
    await expect(tab.page.locator("#summary")).to_have_text("2 request(s), 0 drop(s) or warning(s), 1 error(s)")
    error = tab.page.locator("#lines li.error")
    await expect(error).to_contain_text('"location": "export.jsonl:3"')
    await expect(error).to_contain_text('"pointer": "/events"')
    await tab.screenshot("playground")
