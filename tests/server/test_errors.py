"""Error answers: mParticle's ``{"errors": [{code, message}]}`` plus a JSON pointer when there is one."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from mparticle_klaviyo.server.errors import PayloadTooLargeError, error_response


def body_of(response: web.Response) -> Any:
    assert isinstance(response.body, bytes)
    return json.loads(response.body)


def test_an_error_answer_is_json_with_code_message_and_pointer() -> None:
    response = error_response(400, "BAD_REQUEST", "Expected str, got int", "/events/0/event_type")
    assert (response.status, response.content_type) == (400, "application/json")
    assert body_of(response) == {
        "errors": [{"code": "BAD_REQUEST", "message": "Expected str, got int", "pointer": "/events/0/event_type"}]
    }


def test_an_error_without_a_place_has_no_pointer() -> None:
    response = error_response(401, "UNAUTHORIZED", "missing Authorization header")
    assert body_of(response) == {"errors": [{"code": "UNAUTHORIZED", "message": "missing Authorization header"}]}


def test_the_whole_document_is_the_empty_pointer() -> None:
    response = error_response(400, "BAD_REQUEST", "malformed JSON", "")
    assert body_of(response)["errors"][0]["pointer"] == ""


def test_a_payload_too_large_error_keeps_its_pointer() -> None:
    error = PayloadTooLargeError("batch of 200000 bytes (at most 131072)", "/3")
    assert (error.message, error.pointer, str(error)) == (
        "batch of 200000 bytes (at most 131072)",
        "/3",
        "batch of 200000 bytes (at most 131072)",
    )
