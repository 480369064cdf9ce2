"""The inspection and control endpoints, and running the emulator."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from typing import Any

import aiohttp

from mparticle_klaviyo.klaviyo.emulator import Emulator, RunningEmulator, create_app

from .helpers import (
    DELETE_PROFILE,
    UNSUBSCRIBE,
    Req,
    client,
    config,
    deletion_body,
    event_body,
    exchange,
    run,
    send,
    server,
    subscription_body,
    unsubscriber,
    unsubscription_body,
)

STATE_KEYS = {
    "events",
    "events_recorded",
    "profiles",
    "subscriptions",
    "unsubscriptions",
    "deletions",
    "duplicates_dropped",
    "rejected",
    "throttled",
    "requests",
    "violations",
    "faults_injected",
    "partial_failures",
}


def test_the_state_document_has_every_documented_member() -> None:
    responses, state = exchange()
    assert responses == []
    assert set(state) == STATE_KEYS
    assert state["requests"] == 0


def test_a_rejection_is_recorded_with_status_method_path_code_detail_and_pointer() -> None:
    _, state = exchange(client("/client/events", event_body(value="1")))
    assert state["rejected"] == [
        {
            "status": 400,
            "method": "POST",
            "path": "/client/events",
            "code": "invalid",
            "detail": "'value' must be a number.",
            "pointer": "/data/attributes/value",
        }
    ]


def test_a_rejection_about_a_parameter_records_the_parameter() -> None:
    _, state = exchange(client("/client/events", event_body(), company=None))
    assert state["rejected"][0]["parameter"] == "company_id"


def test_requests_count_every_api_call_but_not_control_calls() -> None:
    _, state = exchange(client("/client/events", event_body()), Req("GET", "/nowhere"), Req("GET", "/_emulator/faults"))
    assert state["requests"] == 2


def test_reset_clears_recorded_state_but_keeps_configuration() -> None:
    override = Req("POST", "/_emulator/limits", b'{"POST /client/events": [5, 50]}')
    reqs = [
        override,
        client("/client/events", event_body()),
        client("/client/subscriptions", subscription_body()),
        server(UNSUBSCRIBE, unsubscription_body([unsubscriber(email="joe@example.com")])),
        server(DELETE_PROFILE, deletion_body(email="jane@example.com")),
    ]
    responses, state = exchange(*reqs, Req("POST", "/_emulator/reset"), Req("GET", "/_emulator/limits"))
    assert [r.status for r in responses[1:5]] == [202] * 4
    assert responses[5].json() == {"reset": True}
    assert responses[6].json()["POST /client/events"] == [5, 50]
    assert state["events"] == [] and state["subscriptions"] == [] and state["profiles"] == {}
    assert state["unsubscriptions"] == [] and state["deletions"] == []
    assert state["requests"] == 0


def test_unsubscriptions_and_deletions_have_control_routes_that_are_not_counted() -> None:
    reqs = [
        server(UNSUBSCRIBE, unsubscription_body([unsubscriber()])),
        server(DELETE_PROFILE, deletion_body(email="nobody@example.com")),
        Req("GET", "/_emulator/unsubscriptions"),
        Req("GET", "/_emulator/deletions"),
    ]
    responses, state = exchange(*reqs)
    assert responses[2].json() == {"unsubscriptions": state["unsubscriptions"]}
    assert responses[3].json() == {"deletions": state["deletions"]}
    assert len(state["unsubscriptions"]) == len(state["deletions"]) == 1
    assert state["requests"] == 2


def test_a_profile_shows_its_consent_and_lists() -> None:
    _, state = exchange(client("/client/subscriptions", subscription_body()))
    profile = state["profiles"]["jane@example.com"]
    assert (profile["consent"], profile["lists"]) == ({"email.marketing": "SUBSCRIBED"}, ["LIST01"])


def test_after_reset_a_previously_seen_event_is_recorded_again() -> None:
    body = event_body()
    _, state = exchange(client("/client/events", body), Req("POST", "/_emulator/reset"), client("/client/events", body))
    assert len(state["events"]) == 1 and state["duplicates_dropped"] == 0


def test_kept_events_can_be_capped_while_the_recorded_count_stays_exact() -> None:
    reqs = [client("/client/events", event_body(unique_id=str(i))) for i in range(5)]
    _, state = exchange(*reqs, cfg=config(max_events_kept=2))
    assert [e["unique_id"] for e in state["events"]] == ["3", "4"]
    assert state["events_recorded"] == 5


def test_profiles_are_keyed_by_their_first_identifier() -> None:
    _, state = exchange(
        client("/client/events", event_body(profile={"external_id": "mp-1"})),
        client("/client/events", event_body(profile={"phone_number": "+15005550006"})),
    )
    assert set(state["profiles"]) == {"mp-1", "+15005550006"}


def test_start_emulator_gives_a_loopback_url_and_the_emulator() -> None:
    async def scenario(running: RunningEmulator, session: aiohttp.ClientSession) -> str:
        assert isinstance(running.emulator, Emulator)
        resp = await send(session, running.url, Req("GET", "/_emulator/state"), running.emulator.config)
        assert resp.status == 200
        return running.url

    url = run(scenario)
    assert url.startswith("http://127.0.0.1:") and not url.endswith("/")


def test_create_app_and_emulator_app_build_applications() -> None:
    emulator = Emulator()
    assert create_app(emulator) is not None
    assert emulator.app() is not None


def test_serve_emulator_prints_its_url_and_serves() -> None:
    code = (
        "from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig, serve_emulator;"
        "serve_emulator(EmulatorConfig(), '127.0.0.1', 0)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "/_emulator/state", timeout=5) as response:
            state: dict[str, Any] = json.load(response)
        assert set(state) == STATE_KEYS
    finally:
        proc.terminate()
        proc.wait(timeout=5)
