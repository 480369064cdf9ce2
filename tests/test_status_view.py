"""``status`` for people: one line per pause, tables of the store and the service's totals."""

from __future__ import annotations

import io

from rich.console import Console

from mparticle_klaviyo.service.status import (
    Backlog,
    ConnectionStatus,
    Credentials,
    DeadLetters,
    Gate,
    Service,
    Status,
)
from mparticle_klaviyo.status_view import pause_lines, print_status

NOW = 1_764_000_000.0  # 2025-11-24T16:00:00Z


def status(reachable: bool = True) -> Status:
    acme = ConnectionStatus(
        name="acme",
        totals={"events_received": 12, "jobs_queued": 11, "jobs_delivered": 9, "klaviyo_429": 2},
        rates_per_s=None,
        credentials=Credentials(
            "paused", "2025-11-24T15:59:00Z", "POST /client/events", "401", "authentication_failed"
        ),
        klaviyo_unreachable_since="2025-11-24T15:59:30Z",
        gates=[
            Gate("POST /client/events", False, 12.0, "2025-11-24T16:00:12Z"),
            Gate("POST /client/subscriptions", True, 0.0, None),
        ],
    )
    return Status(
        generated_at="2025-11-24T16:00:00Z",
        store="jobs.sqlite3",
        backlog=[Backlog("acme", "ready", 3, 42.0)],
        dead_letters=[DeadLetters("acme", "http_400", 2)],
        service=Service("http://127.0.0.1:8080/metrics", reachable, None),
        connections=[acme] if reachable else [],
    )


def test_each_pause_is_one_line_naming_its_connection_and_since_or_until_when() -> None:
    assert pause_lines(status(), NOW) == [
        "acme: Klaviyo unreachable since 2025-11-24T15:59:30Z (30s)",
        "acme: delivery paused: Klaviyo answered 401 authentication_failed on POST /client/events "
        "since 2025-11-24T15:59:00Z (60s)",
        "acme: paused by Klaviyo (429 Retry-After) on POST /client/events until 2025-11-24T16:00:12Z (12s)",
    ]


def test_the_tables_show_the_backlog_dead_letters_and_totals() -> None:
    output = io.StringIO()
    print_status(Console(file=output, width=250), status())
    text = output.getvalue()
    assert "Job store (jobs.sqlite3)" in text and "Dead letters" in text and "http_400" in text
    assert "Since serve started" in text and "paused" in text


def test_without_the_service_it_says_so_after_the_stores_part() -> None:
    output = io.StringIO()
    print_status(Console(file=output, width=250), status(reachable=False))
    assert "rates: the service is not reachable at http://127.0.0.1:8080/metrics" in output.getvalue()
    assert "Since serve started" not in output.getvalue()
