"""Credentials -> connection: 401 when missing or malformed, 403 when wrong, compared in constant time."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.server import auth
from mparticle_klaviyo.server.auth import AuthError, events_api_connection, firehose_connection, webhook_connection
from tests.service.live import (
    ACME_KEY,
    ACME_SECRET,
    ACME_TOKEN,
    ACME_WEBHOOK,
    BETA_KEY,
    BETA_SECRET,
    BETA_TOKEN,
    CONNECTIONS,
    LiveApp,
    make_config,
    token,
)

CONNECTIONS_BY_NAME = make_config(Path("unused.sqlite3")).connections
WITHOUT_INPUTS = make_config(Path("unused.sqlite3"), {"bare": {"public_api_key": "BARE01"}}).connections


def basic_header(key: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()


def status_of(error: pytest.ExceptionInfo[AuthError]) -> int:
    return error.value.status


def test_a_firehose_token_finds_its_connection() -> None:
    assert firehose_connection(f"Token {BETA_TOKEN}", CONNECTIONS_BY_NAME).name == "beta"


def test_surrounding_spaces_around_the_token_are_ignored() -> None:
    assert firehose_connection(f"Token   {ACME_TOKEN}  ", CONNECTIONS_BY_NAME).name == "acme"


@pytest.mark.parametrize("header", [None, "", "Token", "Token   ", f"Bearer {ACME_TOKEN}"])
def test_a_missing_or_malformed_firehose_header_is_401(header: str | None) -> None:
    with pytest.raises(AuthError) as error:
        firehose_connection(header, CONNECTIONS_BY_NAME)
    assert status_of(error) == 401


@pytest.mark.parametrize("value", [ACME_TOKEN[:-1], ACME_TOKEN + "0", ACME_TOKEN.upper(), "x", ACME_SECRET])
def test_a_wrong_firehose_token_is_403(value: str) -> None:
    with pytest.raises(AuthError) as error:
        firehose_connection(f"Token {value}", CONNECTIONS_BY_NAME)
    assert status_of(error) == 403


def test_no_token_is_accepted_when_no_connection_has_one() -> None:
    with pytest.raises(AuthError) as error:
        firehose_connection("Token anything", WITHOUT_INPUTS)
    assert status_of(error) == 403


def test_basic_credentials_find_their_connection() -> None:
    assert events_api_connection(basic_header(BETA_KEY, BETA_SECRET), CONNECTIONS_BY_NAME).name == "beta"


def test_a_secret_may_contain_colons() -> None:
    tables = {"c": {"public_api_key": "ABC123", "events_api_key": "k", "events_api_secret": "a:b:c"}}
    connections = make_config(Path("unused.sqlite3"), tables).connections
    assert events_api_connection(basic_header("k", "a:b:c"), connections).name == "c"


@pytest.mark.parametrize(
    ("key", "secret"),
    [(ACME_KEY, BETA_SECRET), (BETA_KEY, ACME_SECRET), (ACME_KEY, ACME_SECRET + " "), (ACME_SECRET, ACME_KEY)],
)
def test_a_key_with_any_but_its_own_secret_is_403(key: str, secret: str) -> None:
    with pytest.raises(AuthError) as error:
        events_api_connection(basic_header(key, secret), CONNECTIONS_BY_NAME)
    assert status_of(error) == 403


def test_connections_without_events_api_credentials_accept_no_basic_credentials() -> None:
    with pytest.raises(AuthError) as error:
        events_api_connection(basic_header("key", "secret"), WITHOUT_INPUTS)
    assert status_of(error) == 403


@pytest.mark.parametrize(("key", "secret"), [("", ""), ("key", ""), ("", "secret")])
def test_an_empty_key_or_secret_never_authenticates(key: str, secret: str) -> None:
    # Seen: a connection configured with empty credentials accepted "Basic Og==" (":").
    with pytest.raises(AuthError) as error:
        events_api_connection(basic_header(key, secret), CONNECTIONS_BY_NAME)
    assert status_of(error) == 401


@pytest.mark.parametrize("header", ["Basic ***", "Basic " + base64.b64encode(b"\xff:\xfe").decode(), "Basic \udcff"])
def test_basic_credentials_that_do_not_decode_are_401(header: str) -> None:
    with pytest.raises(AuthError) as error:
        events_api_connection(header, CONNECTIONS_BY_NAME)
    assert status_of(error) == 401


def test_the_webhook_header_must_equal_the_configured_value() -> None:
    assert webhook_connection("acme", ACME_WEBHOOK, CONNECTIONS_BY_NAME).name == "acme"
    with pytest.raises(AuthError) as error:
        webhook_connection("acme", ACME_WEBHOOK + " ", CONNECTIONS_BY_NAME)
    assert status_of(error) == 403


def test_a_missing_webhook_header_is_401() -> None:
    with pytest.raises(AuthError) as error:
        webhook_connection("acme", None, CONNECTIONS_BY_NAME)
    assert status_of(error) == 401


def test_an_unknown_or_unconfigured_webhook_connection_is_403_even_without_a_header() -> None:
    for name, connections in (("nobody", CONNECTIONS_BY_NAME), ("bare", WITHOUT_INPUTS)):
        with pytest.raises(AuthError) as error:
            webhook_connection(name, None, connections)
        assert status_of(error) == 403


@pytest.mark.parametrize("header", ["Token \udcff\udcfe", "\udcff", "Bearer caf\udce9"])
def test_header_values_that_are_not_utf_8_are_refused_not_crashed_on(header: str) -> None:
    # aiohttp hands over undecodable header bytes as surrogate escapes.
    with pytest.raises(AuthError):
        firehose_connection(header, CONNECTIONS_BY_NAME)
    with pytest.raises(AuthError):
        webhook_connection("acme", header, CONNECTIONS_BY_NAME)


def test_a_latin_1_authorization_header_is_403_over_http(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        firehose = app.post("/firehose", {"type": "event_processing_request"}, {"Authorization": "Token \xff\xfe"})
        hook = app.post("/webhook/acme", {"events": []}, {"Authorization": "Bearer caf\xe9"})
    assert (firehose.status, hook.status) == (403, 403)


def test_credentials_are_compared_with_hmac_compare_digest() -> None:
    # Constant-time comparison is not observable in a unit test; check what the comparison uses.
    assert "compare_digest" in auth._equal.__code__.co_names


def test_every_connection_is_compared_even_after_a_match() -> None:
    # The loop must not stop at the first match: timing would tell which connection matched.
    seen: list[str] = []

    class Watched(dict[str, Connection]):
        def values(self) -> Iterator[Connection]:  # type: ignore[override]
            for connection in super().values():
                seen.append(connection.name)
                yield connection

    connections = Watched(CONNECTIONS_BY_NAME)
    assert firehose_connection(f"Token {ACME_TOKEN}", connections).name == "acme"
    assert events_api_connection(basic_header(ACME_KEY, ACME_SECRET), connections).name == "acme"
    assert seen == list(CONNECTIONS) * 2


def test_auth_errors_do_not_repeat_the_credentials_they_were_given(tmp_path: Path) -> None:
    guess = "guessed-token-0451"
    with LiveApp(tmp_path) as app:
        answers = [
            app.post("/firehose", {"type": "event_processing_request"}, token(guess)),
            app.post("/v2/events", {"events": []}, {"Authorization": basic_header(ACME_KEY, guess)}),
            app.post("/webhook/acme", {"events": []}, {"Authorization": guess}),
        ]
    assert [answer.status for answer in answers] == [403, 403, 403]
    assert not any(guess.encode() in answer.body for answer in answers)
