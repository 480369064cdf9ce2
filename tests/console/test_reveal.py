"""The personal-data switch: read from ``?reveal=1`` only, logged without the data, never linking on."""

from __future__ import annotations

import logging

import pytest
from aiohttp.test_utils import make_mocked_request

from mparticle_klaviyo.console.reveal import reveal_switch, revealed


def test_only_reveal_1_reveals_and_each_reveal_is_logged_with_the_item_and_address(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo.console")
    for query in ("", "?reveal=0", "?reveal=yes"):
        assert not revealed(make_mocked_request("GET", f"/console/live/7{query}"), live_entry=7)
    assert caplog.records == []
    assert revealed(make_mocked_request("GET", "/console/live/7?reveal=1"), live_entry=7)
    [record] = caplog.records
    assert record.getMessage() == "console personal data shown"
    assert record.live_entry == 7  # type: ignore[attr-defined]


def test_the_switch_links_to_this_page_revealed_and_back_to_it_masked() -> None:
    masked = reveal_switch("/console/dead-letters/3", reveal=False)
    assert 'href="/console/dead-letters/3?reveal=1"' in masked and "Show personal data" in masked
    shown = reveal_switch("/console/dead-letters/3", reveal=True)
    assert 'href="/console/dead-letters/3"' in shown and "reveal=1" not in shown and "Mask personal data" in shown
