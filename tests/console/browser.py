"""Debian's Chromium driven by Playwright, for the console's browser tests (no browser download)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import ConsoleMessage, Page, async_playwright

from tests.conftest import skip_or_fail

CHROMIUM = Path("/usr/bin/chromium")
# Set to a folder to save a screenshot of each page there (README's docs/console/*.png).
SCREENSHOTS = os.environ.get("MPK_CONSOLE_SCREENSHOTS")


def require_chromium() -> None:
    """Skip (fail under CI=true) when Debian's chromium package is not installed."""
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} is absent (apt-get install chromium; .ci/run does)")


class Tab:
    """A page plus every console error and uncaught exception it produced."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            self.errors.append(f"{message.type}: {message.text}")

    async def screenshot(self, name: str) -> None:
        """Save the page as ``NAME.png`` when screenshots were asked for."""
        if SCREENSHOTS:
            await self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


@asynccontextmanager
async def chromium_tab() -> AsyncIterator[Tab]:
    """A fresh headless Chromium with one tab, laptop-sized."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            yield Tab(page)
        finally:
            await browser.close()
