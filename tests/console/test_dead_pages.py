"""Dead-letter filters and selections read from forms."""

from __future__ import annotations

import pytest

from mparticle_klaviyo.console.dead_pages import FilterError, dead_filter, selected_ids
from mparticle_klaviyo.store.base import DeadFilter


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
