from __future__ import annotations

import json
import logging
import time
from email.utils import formatdate

import pytest

from mparticle_klaviyo.errors import ConfigError
from mparticle_klaviyo.klaviyo.classify import Delivered, Outcome, Permanent, Retryable, Throttled
from mparticle_klaviyo.klaviyo.client import KlaviyoClient, user_agent
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.secret import Secret
from tests.delivery.helpers import PRIVATE_KEY, PUBLIC_KEY, client_for, event_request, run
from tests.delivery.scripted_server import Received, ScriptedServer, Step, error_body


async def send_one(
    step: Step, *, auth: str = "public", private: bool = True, timeout_s: float = 5.0
) -> tuple[Outcome, list[Received]]:
    async with ScriptedServer([step]) as server, client_for(server.url, timeout_s=timeout_s, private=private) as client:
        outcome = await client.send(event_request(1, auth=auth))
        return outcome, server.received


def test_public_requests_carry_company_id_and_no_authorization() -> None:
    _, received = run(send_one(Step()))
    assert received[0].query == {"company_id": PUBLIC_KEY}
    assert "Authorization" not in received[0].headers


def test_private_requests_carry_the_api_key_header_and_no_company_id() -> None:
    _, received = run(send_one(Step(), auth="private"))
    assert received[0].headers["Authorization"] == f"Klaviyo-API-Key {PRIVATE_KEY}"
    assert received[0].query == {}
    assert received[0].path == "/api/events"


def test_every_request_carries_revision_json_api_types_and_user_agent() -> None:
    _, received = run(send_one(Step()))
    headers = received[0].headers
    assert headers["revision"] == "2026-07-15"
    assert headers["Content-Type"] == "application/vnd.api+json"
    assert headers["Accept"] == "application/vnd.api+json"
    assert headers["User-Agent"] == user_agent()
    assert user_agent().startswith("mparticle-klaviyo/")


def test_the_revision_is_configurable() -> None:
    async def scenario() -> str:
        async with ScriptedServer() as server:
            client = KlaviyoClient(public_key=Secret(PUBLIC_KEY), base_url=server.url, revision="2025-01-15")
            async with client:
                await client.send(event_request())
            return server.received[0].headers["revision"]

    assert run(scenario()) == "2025-01-15"


def test_the_body_is_sent_as_json() -> None:
    _, received = run(send_one(Step()))
    assert json.loads(received[0].body) == event_request(1).body


def test_a_202_is_delivered() -> None:
    outcome, _ = run(send_one(Step(status=202)))
    assert outcome == Delivered(status=202)


def test_a_partial_failure_header_is_surfaced() -> None:
    outcome, _ = run(send_one(Step(headers={"X-Klaviyo-Partial-Failure": "1 of 3"})))
    assert outcome == Delivered(status=202, partial_failure="1 of 3")


def test_a_429_with_integer_retry_after_is_throttled() -> None:
    outcome, _ = run(send_one(Step(status=429, headers={"Retry-After": "7"})))
    assert isinstance(outcome, Throttled)
    assert outcome.retry_after == 7.0


def test_a_429_with_an_http_date_retry_after_is_throttled_for_the_seconds_until_then() -> None:
    date = formatdate(time.time() + 120, usegmt=True)
    outcome, _ = run(send_one(Step(status=429, headers={"Retry-After": date})))
    assert isinstance(outcome, Throttled)
    assert outcome.retry_after == pytest.approx(120, abs=2)


def test_a_503_is_retryable() -> None:
    outcome, _ = run(send_one(Step(status=503)))
    assert isinstance(outcome, Retryable)
    assert outcome.reason == "http_503"


def test_a_400_is_permanent_with_klaviyo_detail() -> None:
    body = error_body(400, "invalid", "Invalid email", "/data/attributes/profile/data/attributes/email")
    outcome, _ = run(send_one(Step(status=400, body=body)))
    assert outcome == Permanent(
        status=400,
        reason="invalid",
        detail="Invalid email (at /data/attributes/profile/data/attributes/email)",
        pointer="/data/attributes/profile/data/attributes/email",
    )


def test_a_redirect_is_not_followed() -> None:
    outcome, received = run(send_one(Step(status=307, headers={"Location": "http://127.0.0.1:9/steal"})))
    assert isinstance(outcome, Permanent)
    assert outcome.status == 307
    assert len(received) == 1


def test_a_timeout_becomes_retryable_instead_of_raising() -> None:
    outcome, _ = run(send_one(Step(delay_s=1.0), timeout_s=0.1))
    assert isinstance(outcome, Retryable)
    assert outcome.reason == "timeout"


def test_a_connection_reset_becomes_retryable_instead_of_raising() -> None:
    outcome, _ = run(send_one(Step(reset=True)))
    assert isinstance(outcome, Retryable)
    assert outcome.reason in {"connection_reset", "connection_error"}


def test_a_refused_connection_becomes_retryable_instead_of_raising() -> None:
    async def scenario() -> Outcome:
        async with client_for("http://127.0.0.1:1") as client:
            return await client.send(event_request())

    outcome = run(scenario())
    assert isinstance(outcome, Retryable)
    assert outcome.reason == "connection_error"


def test_a_private_request_without_a_private_key_fails_without_sending() -> None:
    outcome, received = run(send_one(Step(), auth="private", private=False))
    assert outcome == Permanent(status=0, reason="missing_private_key", detail="no private key configured")
    assert received == []


def test_requests_reuse_one_keep_alive_connection() -> None:
    async def scenario() -> set[tuple[str, int] | None]:
        async with ScriptedServer() as server, client_for(server.url) as client:
            for n in range(5):
                await client.send(event_request(n))
            return {r.peer for r in server.received}

    assert len(run(scenario())) == 1


def test_repr_of_the_client_shows_no_key() -> None:
    text = repr(client_for("http://127.0.0.1:1"))
    assert PUBLIC_KEY not in text
    assert PRIVATE_KEY not in text
    assert "***" in text


def test_outcomes_never_contain_a_key_even_when_klaviyo_echoes_it() -> None:
    echo = error_body(400, "invalid", f"company {PUBLIC_KEY} rejected key {PRIVATE_KEY}")
    outcome, _ = run(send_one(Step(status=400, body=echo)))
    assert isinstance(outcome, Permanent)
    assert PUBLIC_KEY not in str(outcome)
    assert PRIVATE_KEY not in str(outcome)


@pytest.mark.parametrize(
    "base_url",
    [
        "ftp://a.klaviyo.com",
        "a.klaviyo.com",
        "http://",
        f"https://a.klaviyo.com?company_id={PUBLIC_KEY}",
        f"https://{PRIVATE_KEY}@x",
        "http://a..b",
        "http://exa mple.com",
        "http://x:port",
    ],
)
def test_a_bad_base_url_is_rejected_without_revealing_keys(base_url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        client_for(base_url)
    assert PUBLIC_KEY not in str(caught.value)
    assert PRIVATE_KEY not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_log_lines_never_contain_a_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    run(send_one(Step(status=400, body=error_body(400, "invalid", f"bad {PUBLIC_KEY}"))))
    run(send_one(Step(reset=True), auth="private"))
    assert caplog.records
    assert PUBLIC_KEY not in caplog.text
    assert PRIVATE_KEY not in caplog.text


def test_a_body_that_cannot_be_encoded_fails_permanently_without_sending() -> None:
    async def scenario() -> tuple[Outcome, int]:
        async with ScriptedServer() as server, client_for(server.url) as client:
            request = KlaviyoRequest(path="/client/events", auth="public", kind="event", body={"x": object()})
            return await client.send(request), len(server.received)

    outcome, sent = run(scenario())
    assert isinstance(outcome, Permanent)
    assert (outcome.status, outcome.reason, sent) == (0, "unencodable_body", 0)
