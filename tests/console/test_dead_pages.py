"""Dead-letter filters and selections read from forms; a dead letter's page and its personal data switch."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from mparticle_klaviyo.console.dead_pages import FilterError, dead_filter, selected_ids
from mparticle_klaviyo.store.base import DeadFilter
from tests.console.helpers import PASSWORD, client, logged_in, seed_dead, served
from tests.service.e2e_helpers import run_async


def test_an_http_status_filters_by_its_reason_part() -> None:
    assert dead_filter({"connection": "acme", "status": "503"}) == DeadFilter(connection="acme", reason="http_503")


def test_empty_fields_filter_nothing() -> None:
    assert dead_filter({"connection": "", "reason": " "}) == DeadFilter()


@pytest.mark.parametrize("query", [{"status": "5xx"}, {"status": "503", "reason": "max_age"}, {"status": "50"}])
def test_an_unclear_status_is_refused(query: dict[str, str]) -> None:
    with pytest.raises(FilterError):
        dead_filter(query)


def test_selected_ids_must_be_numbers() -> None:
    assert selected_ids(["3", "12"]) == (3, 12)
    with pytest.raises(FilterError):
        selected_ids(["3", "1 OR 1=1"])


def dead_letter_page(tmp_path: Path, query: str) -> str:
    """The detail page of a dead letter of jane.doe@example.com (+15555550123 in Klaviyo's answer)."""
    [job_id] = seed_dead(tmp_path)

    pages: list[str] = []

    async def go() -> None:
        async with served(tmp_path, console_password=PASSWORD) as app, client() as session:
            await logged_in(session, app.url)
            async with session.get(f"{app.url}/console/dead-letters/{job_id}{query}") as answer:
                assert answer.status == 200
                pages.append(await answer.text())

    run_async(go())
    return pages[0]


def test_a_dead_letter_shows_personal_data_masked_by_default(tmp_path: Path) -> None:
    text = dead_letter_page(tmp_path, "")
    assert "jane.doe@example.com" not in text and "+15555550123" not in text
    assert "j***@e***.com" in text
    assert "?reveal=1" in text and "Show personal data" in text


def test_the_show_personal_data_switch_unmasks_input_answer_and_requests(tmp_path: Path) -> None:
    text = dead_letter_page(tmp_path, "?reveal=1")
    stored, _, requests = text.partition("What today's code would send")
    answer = stored.partition("Klaviyo's answer")[2].partition("Stored mParticle input")[0]
    assert "jane.doe@example.com" in answer and "+15555550123" in answer
    assert "jane.doe@example.com" in stored.partition("Stored mParticle input")[2]
    assert "jane.doe@example.com" in requests
    assert "j***@" not in text and "+1********23" not in text
    assert "Mask personal data" in text


def test_the_switch_is_not_sticky_links_elsewhere_do_not_carry_it(tmp_path: Path) -> None:
    text = dead_letter_page(tmp_path, "?reveal=1")
    assert text.count("reveal=1") == 0, "nothing on the revealed page links to another revealed page"


def test_showing_personal_data_logs_the_dead_letter_and_the_address_but_no_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo.console")
    dead_letter_page(tmp_path, "?reveal=1")
    [record] = [r for r in caplog.records if r.getMessage() == "console personal data shown"]
    assert isinstance(record.dead_letter, int) and record.remote == "127.0.0.1"  # type: ignore[attr-defined]
    logged = repr(record.__dict__)
    assert "jane.doe" not in logged and "5555550123" not in logged


def test_a_masked_dead_letter_page_logs_nothing_about_personal_data(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo.console")
    dead_letter_page(tmp_path, "")
    assert [r for r in caplog.records if r.getMessage() == "console personal data shown"] == []
