from __future__ import annotations

import errno
import json
from collections.abc import Mapping

import aiohttp
import pytest

from mparticle_klaviyo.klaviyo.classify import (
    MAX_DETAIL_CHARS,
    Delivered,
    Permanent,
    Retryable,
    Throttled,
    classify_exception,
    classify_response,
)


def errors(*items: Mapping[str, object]) -> bytes:
    return json.dumps({"errors": list(items)}).encode()


INVALID = {
    "id": "98c6a3bf",
    "status": 400,
    "code": "invalid",
    "title": "Invalid input.",
    "detail": "'last_name' is not a valid field for the resource 'profile'.",
    "source": {"pointer": "/data/attributes/profiles/data/0/attributes/last_name"},
    "links": {},
    "meta": {},
}


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_a_2xx_is_delivered(status: int) -> None:
    assert classify_response(status, {}, b"") == Delivered(status=status)


def test_a_partial_failure_header_is_delivered_but_surfaced() -> None:
    outcome = classify_response(202, {"x-klaviyo-partial-failure": "2 of 10 rejected"}, b"")
    assert outcome == Delivered(status=202, partial_failure="2 of 10 rejected")


def test_a_429_is_throttled_with_the_parsed_retry_after() -> None:
    body = errors({"code": "throttled", "detail": "Request was throttled. Expected available in 1 second."})
    outcome = classify_response(429, {"Retry-After": "1"}, body, retry_after=1.0)
    assert outcome == Throttled(retry_after=1.0, detail="Request was throttled. Expected available in 1 second.")


def test_a_429_without_retry_after_is_throttled_with_none() -> None:
    assert classify_response(429, {}, b"") == Throttled(retry_after=None)


@pytest.mark.parametrize("status", [408, 500, 502, 503, 504, 524])
def test_transient_statuses_are_retryable(status: int) -> None:
    outcome = classify_response(status, {}, b"<html>oops</html>")
    assert outcome == Retryable(reason=f"http_{status}", status=status, detail="<html>oops</html>")


@pytest.mark.parametrize("status", [501, 505])
def test_5xx_that_describe_the_request_are_permanent(status: int) -> None:
    assert isinstance(classify_response(status, {}, b""), Permanent)


def test_a_400_is_permanent_with_klaviyo_code_detail_and_pointer() -> None:
    outcome = classify_response(400, {}, errors(INVALID))
    assert outcome == Permanent(
        status=400,
        reason="invalid",
        detail="'last_name' is not a valid field for the resource 'profile'. "
        "(at /data/attributes/profiles/data/0/attributes/last_name)",
        pointer="/data/attributes/profiles/data/0/attributes/last_name",
    )


@pytest.mark.parametrize("status", [401, 403, 404, 409, 413, 422])
def test_other_4xx_are_permanent(status: int) -> None:
    assert isinstance(classify_response(status, {}, b""), Permanent)


def test_a_3xx_is_permanent_because_redirects_are_not_followed() -> None:
    assert classify_response(302, {"Location": "https://example.com"}, b"") == Permanent(
        status=302, reason="http_302", detail=""
    )


def test_several_errors_are_summarised_in_one_detail() -> None:
    second = {"code": "invalid", "detail": "bad email", "source": {"parameter": "email"}}
    outcome = classify_response(400, {}, errors(INVALID, second))
    assert isinstance(outcome, Permanent)
    assert outcome.detail.endswith("; bad email (parameter email)")


def test_a_long_detail_is_trimmed() -> None:
    outcome = classify_response(400, {}, errors({"code": "invalid", "detail": "x" * 5000}))
    assert isinstance(outcome, Permanent)
    assert len(outcome.detail) == MAX_DETAIL_CHARS
    assert outcome.detail.endswith("…")


def test_a_non_json_error_body_becomes_trimmed_text() -> None:
    outcome = classify_response(404, {}, b"<html>\n  <b>Not   Found</b>\n</html>")
    assert outcome == Permanent(status=404, reason="http_404", detail="<html> <b>Not Found</b> </html>")


def test_a_timeout_is_retryable() -> None:
    assert classify_exception(TimeoutError()) == Retryable(reason="timeout", detail="TimeoutError")


def test_aiohttp_server_timeout_is_retryable_as_timeout() -> None:
    assert classify_exception(aiohttp.ServerTimeoutError("read")).reason == "timeout"


def test_a_connection_reset_is_retryable() -> None:
    outcome = classify_exception(aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"))
    assert isinstance(outcome, Retryable)
    assert outcome.reason == "connection_reset"


def test_a_server_disconnect_is_retryable_as_a_reset() -> None:
    outcome = classify_exception(aiohttp.ServerDisconnectedError())
    assert isinstance(outcome, Retryable)
    assert outcome.reason == "connection_reset"


def test_a_refused_connection_is_retryable() -> None:
    outcome = classify_exception(ConnectionRefusedError(errno.ECONNREFUSED, "refused"))
    assert isinstance(outcome, Retryable)
    assert outcome.reason == "connection_error"


def test_a_truncated_response_body_is_retryable() -> None:
    outcome = classify_exception(aiohttp.ClientPayloadError("Response payload is not completed"))
    assert isinstance(outcome, Retryable)
    assert outcome.reason == "connection_error"


def test_an_invalid_url_is_permanent_and_nothing_was_sent() -> None:
    outcome = classify_exception(aiohttp.InvalidURL("http://["))
    assert isinstance(outcome, Permanent)
    assert (outcome.status, outcome.reason) == (0, "invalid_url")
