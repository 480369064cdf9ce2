"""No secret ever shows: a real ``serve`` run with distinctive secrets, good and bad requests, SIGTERM.

Its stdout and stderr (debug logs), ``/metrics`` and every HTTP answer are searched for every
configured secret, in every form it travels in (raw, inside a Basic header, base64 of key:secret),
and for the wrong credentials the test itself sent.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import aiohttp

from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig, RunningEmulator
from mparticle_klaviyo.klaviyo.emulator.config import ALL_WRITE_SCOPES
from tests.service.e2e_helpers import run_cli
from tests.service.messages import batch, event, firehose_events, outbound_batch, registration_request
from tests.service.served import Served, emulator_state, wait_for_events, with_emulator, write_config

PUBLIC = "Qz7Xw4"  # Klaviyo public keys are 6 characters
SERVER_PUBLIC = "Vk3Jt9"
PRIVATE = "pk_private0SECRET0b7e1c2d9f"
TOKEN = "firehose0SECRET0token0e5a9"
EVENTS_KEY = "events0KEY0c41f"
EVENTS_SECRET = "events0SECRET0d8b2"
WEBHOOK = "Bearer webhook0SECRET0a3c7"
SECRETS = [PUBLIC, SERVER_PUBLIC, PRIVATE, TOKEN, EVENTS_SECRET, WEBHOOK.split()[1], EVENTS_KEY]
SENT_GUESSES = ["guessed0TOKEN0f00d", "guessed0SECRET0beef"]
# A dispatcher that hits a fault logs and retries; the emulator injects some.
FAULTS = [{"status": 503, "count": 1, "path": "/client/events"}, {"status": 429, "count": 1}]


def forms(secret: str) -> list[bytes]:
    """The secret as bytes, and inside the encodings it is sent in."""
    found = [secret.encode()]
    for pair in (f"{EVENTS_KEY}:{secret}", f"{secret}:{EVENTS_SECRET}"):
        found.append(base64.b64encode(pair.encode()))
    return found


def basic(key: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()}


def connections(url: str) -> dict[str, dict[str, Any]]:
    inputs = {
        "firehose_token": TOKEN,
        "events_api_key": EVENTS_KEY,
        "events_api_secret": EVENTS_SECRET,
        "webhook_authorization": WEBHOOK,
    }
    return {
        "client": {"public_api_key": PUBLIC, "klaviyo_url": url, **inputs},
        "server": {
            "public_api_key": SERVER_PUBLIC,
            "private_api_key": PRIVATE,
            "klaviyo_url": url,
            "webhook_authorization": "Bearer server0webhook",
        },
    }


def requests_to_send() -> list[tuple[str, str, Any, dict[str, str]]]:
    """(method, path, JSON body, headers): good requests, bad ones, wrong credentials."""
    token = {"Authorization": f"Token {TOKEN}"}
    good = basic(EVENTS_KEY, EVENTS_SECRET)
    # mParticle sends the connection's settings, the public key included, with every request.
    settings = {"publicApiKey": PUBLIC, "externalEmailIdentityType": "Email"}
    return [
        ("POST", "/firehose", registration_request(), {}),
        ("POST", "/firehose", firehose_events("fh@example.com", settings=settings), token),
        ("POST", "/firehose", firehose_events(events=[], settings=settings), token),
        ("POST", "/firehose", firehose_events(settings={**settings, "phoneIdentifier": "Fax"}), token),
        ("POST", "/firehose", firehose_events(settings={"publicApiKey": " "}), token),
        ("POST", "/firehose", firehose_events(), {"Authorization": f"Token {SENT_GUESSES[0]}"}),
        ("POST", "/firehose", firehose_events(), {"Authorization": f"Bearer {TOKEN}"}),
        ("POST", "/v2/events", batch("ev@example.com", [event(message_id="s-1")]), good),
        ("POST", "/v2/events", batch(events=[{"event_type": 5}]), good),
        ("POST", "/v2/events", batch(), basic(EVENTS_KEY, SENT_GUESSES[1])),
        ("POST", "/v2/events", batch(), basic(SENT_GUESSES[1], EVENTS_SECRET)),
        ("POST", "/v2/events", batch(), {}),
        ("POST", "/v2/bulkevents", [batch("bulk@example.com", [event(message_id="s-2")])], good),
        ("POST", "/v2/bulkevents", [batch(), []], good),
        ("POST", "/webhook/client", outbound_batch("hook@example.com"), {"Authorization": WEBHOOK}),
        ("POST", "/webhook/server", outbound_batch("srv@example.com"), {"Authorization": "Bearer server0webhook"}),
        ("POST", "/webhook/client", outbound_batch(), {"Authorization": WEBHOOK + "x"}),
        ("POST", "/webhook/server", outbound_batch(), {"Authorization": WEBHOOK}),
        ("POST", "/webhook/nobody", outbound_batch(), {"Authorization": WEBHOOK}),
        ("GET", "/healthz", None, {}),
        ("GET", "/readyz", None, {}),
        ("GET", "/openapi.json", None, {}),
        ("GET", "/nowhere", None, {}),
    ]


def emulator_config() -> EmulatorConfig:
    return EmulatorConfig(
        company_ids=frozenset({PUBLIC, SERVER_PUBLIC}),
        private_keys={PRIVATE: ALL_WRITE_SCOPES},
        key_accounts={PRIVATE: SERVER_PUBLIC},
    )


async def run_service(tmp_path: Path, emulator: RunningEmulator) -> tuple[int, bytes, list[int], int]:
    """Serve, send everything, wait for delivery, SIGTERM; (exit code, all output, statuses, events)."""
    async with aiohttp.ClientSession() as session:
        for fault in FAULTS:
            await session.post(f"{emulator.url}/_emulator/faults", json=fault)
        served = await Served.start(write_config(tmp_path, connections(emulator.url), log_level="debug"))
        answers = bytearray()
        statuses: list[int] = []
        try:
            for method, path, body, headers in requests_to_send():
                data = None if body is None else json.dumps(body).encode()
                async with session.request(method, served.url + path, data=data, headers=headers) as response:
                    statuses.append(response.status)
                    answers += f"{response.status} {dict(response.headers)}\n".encode() + await response.read()
            # 4 events queued for "client" and one for "server": wait until Klaviyo has them.
            state = await wait_for_events(emulator, 5)
            async with session.get(served.url + "/metrics") as response:
                answers += await response.read()
        finally:
            code = await served.stop()
    state = await emulator_state(emulator)
    return code, bytes(served.stdout + served.stderr + answers), statuses, state["events_recorded"]


def test_no_secret_appears_in_logs_metrics_or_answers_of_a_real_run(tmp_path: Path) -> None:
    code, output, statuses, delivered = with_emulator(lambda e: run_service(tmp_path, e), emulator_config())
    leaks = [secret for secret in SECRETS + SENT_GUESSES for form in forms(secret) if form in output]
    assert code == 0
    assert delivered == 5
    assert sorted(set(statuses)) == [200, 202, 400, 401, 403, 404]
    assert leaks == []


def test_the_run_logs_json_lines_from_start_to_stop(tmp_path: Path) -> None:
    async def scenario(emulator: RunningEmulator) -> tuple[list[dict[str, Any]], str]:
        served = await Served.start(write_config(tmp_path, connections(emulator.url)))
        await asyncio.sleep(0.1)
        assert await served.stop() == 0
        return served.log_lines(), emulator.url.removeprefix("http://")

    lines, klaviyo = with_emulator(scenario, emulator_config())
    messages = [line["message"] for line in lines]
    assert messages[0] == "serving" and messages[-1] == "stopped"
    assert lines[0]["connections"] == {
        "client": {"mode": "client", "inputs": ["firehose", "events_api", "webhook"], "klaviyo": klaviyo},
        "server": {"mode": "server", "inputs": ["webhook"], "klaviyo": klaviyo},
    }
    assert lines[0]["store"] == str(tmp_path / "jobs.sqlite3")


async def cli_outputs(tmp_path: Path, port: int) -> bytes:
    """What ``status`` and ``dlq list`` print, as text and as JSON, for the service on ``port``."""
    (tmp_path / "cli").mkdir()
    config = write_config(
        tmp_path / "cli", connections("http://127.0.0.1:9"), port=port, store=str(tmp_path / "jobs.sqlite3")
    )
    printed = bytearray()
    for command in (["status", "--sample", "0.1"], ["status", "--json"], ["dlq", "list"], ["dlq", "list", "--json"]):
        code, out, err = await run_cli(*command, "--config", str(config), cwd=tmp_path)
        assert code == 0, err
        printed += (out + err).encode()
    return bytes(printed)


def test_no_secret_appears_in_status_or_dlq_output_text_or_json(tmp_path: Path) -> None:
    async def scenario(emulator: RunningEmulator) -> tuple[bytes, bytes]:
        async with aiohttp.ClientSession() as session:
            # One dead letter (a 400 with Klaviyo's answer), one retry, one 429.
            for fault in [{"status": 400, "count": 1, "path": "/client/events"}, *FAULTS]:
                await session.post(f"{emulator.url}/_emulator/faults", json=fault)
            served = await Served.start(write_config(tmp_path, connections(emulator.url)))
            try:
                good = basic(EVENTS_KEY, EVENTS_SECRET)
                for n in range(3):
                    body = json.dumps(batch(f"s{n}@example.com", [event(message_id=f"s-{n}")])).encode()
                    async with session.post(served.url + "/v2/events", data=body, headers=good) as response:
                        assert response.status == 202
                await wait_for_events(emulator, 2)
                printed = await cli_outputs(tmp_path, int(served.url.rsplit(":", 1)[1]))
            finally:
                await served.stop()
        return printed, bytes(served.stdout + served.stderr)

    printed, logs = with_emulator(scenario, emulator_config())
    assert b"http_400" in printed and b"events_received" in printed, "the outputs are the ones meant"
    leaks = [secret for secret in SECRETS for form in forms(secret) if form in printed + logs]
    assert leaks == []
