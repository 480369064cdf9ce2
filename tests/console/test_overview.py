"""The overview's HTML fragment, from the status document."""

from __future__ import annotations

from mparticle_klaviyo.console.overview import fragment
from mparticle_klaviyo.service.status import (
    Backlog,
    ConnectionStatus,
    Credentials,
    DeadLetters,
    Gate,
    Service,
    Status,
)


def status(**connection: object) -> Status:
    fields: dict[str, object] = {
        "name": "acme",
        "totals": {"events_received": 7},
        "rates_per_s": {"events_received": 1.5},
        "credentials": Credentials("ok"),
        "klaviyo_unreachable_since": None,
        "gates": [],
        **connection,
    }
    return Status(
        generated_at="2026-01-31T12:00:00Z",
        store="jobs.sqlite3",
        backlog=[Backlog("acme", "ready", 3, 42.0)],
        dead_letters=[DeadLetters("acme", "http_400", 2)],
        service=Service("in-process", True, 2.0),
        connections=[ConnectionStatus(**fields)],  # type: ignore[arg-type]
    )


def test_a_closed_gate_reads_paused_by_klaviyo_until_its_time() -> None:
    gate = Gate("POST /client/events", False, 31.0, "2026-01-31T12:04:31Z")
    assert "POST /client/events: paused by Klaviyo until 12:04:31 UTC" in fragment(status(gates=[gate]))


def test_open_gates_say_nothing_is_paused() -> None:
    assert "no endpoint paused" in fragment(status(gates=[Gate("POST /client/events", True, 0.0, None)]))


def test_rates_totals_backlog_age_and_dead_letters_by_reason_are_shown() -> None:
    html = fragment(status())
    assert "<b>1.5</b>" in html
    assert "<b>7</b>" in html
    assert "<td>ready</td><td>3</td><td>42 s</td>" in html
    assert 'href="/console/dead-letters?connection=acme&amp;reason=http_400"' in html


def test_paused_credentials_say_what_klaviyo_answered() -> None:
    credentials = Credentials("paused", "2026-01-31T11:00:00Z", "POST /client/events", "401", "not_authenticated")
    assert "Credentials: paused (Klaviyo answered 401 on POST /client/events)" in fragment(
        status(credentials=credentials)
    )


def test_names_are_escaped() -> None:
    assert "<script>" not in fragment(status(name="<script>"))
