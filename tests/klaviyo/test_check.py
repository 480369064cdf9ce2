"""The key probe: what an answer to an empty request says about the credentials it carried."""

from __future__ import annotations

import json

import pytest

from mparticle_klaviyo.klaviyo.check import (
    SCOPES,
    Accepted,
    Inconclusive,
    Refusal,
    judge,
    probe_request,
    refusal_of,
)
from mparticle_klaviyo.klaviyo.classify import Delivered, Outcome, Permanent, Retryable, Throttled
from tests.conftest import OPENAPI_SPEC, require_shared

BULK = "POST /api/event-bulk-create-jobs"


@pytest.mark.parametrize(
    ("outcome", "verdict"),
    [
        (Permanent(status=400, reason="invalid", detail="bad body"), Accepted(status=400)),
        (Permanent(status=404, reason="not_found", detail=""), Accepted(status=404)),
        (Delivered(status=202), Accepted(status=202)),
        (
            Permanent(status=401, reason="authentication_failed", detail="Incorrect"),
            Refusal(endpoint=BULK, status=401, code="authentication_failed", detail="Incorrect"),
        ),
        (
            Permanent(status=403, reason="permission_denied", detail="missing scopes: events:write"),
            Refusal(endpoint=BULK, status=403, code="permission_denied", detail="missing scopes: events:write"),
        ),
        (
            Retryable(reason="connection_error", detail="refused"),
            Inconclusive(reason="connection_error", detail="refused"),
        ),
        (Retryable(reason="http_503", status=503), Inconclusive(reason="http_503")),
        (Throttled(retry_after=1.0), Inconclusive(reason="throttled")),
        (Permanent(status=0, reason="invalid_url", detail="x"), Inconclusive(reason="invalid_url", detail="x")),
    ],
)
def test_a_probe_answer_judges_the_credentials(outcome: Outcome, verdict: object) -> None:
    assert judge(BULK, outcome) == verdict


def test_only_401_and_403_are_refusals() -> None:
    assert refusal_of(BULK, Permanent(status=400, reason="invalid", detail="")) is None
    assert refusal_of(BULK, Retryable(reason="http_503", status=503)) is None
    refusal = refusal_of(BULK, Permanent(status=403, reason="permission_denied", detail="d"))
    assert refusal is not None and refusal.describe() == f"403 permission_denied on {BULK}"


@pytest.mark.parametrize(
    ("endpoint", "auth", "kind"),
    [
        (BULK, "private", "event_bulk"),
        ("POST /api/profile-subscription-bulk-create-jobs", "private", "subscription_bulk"),
        ("POST /client/events", "public", "event"),
        ("POST /client/subscriptions", "public", "subscription"),
    ],
)
def test_a_probe_is_an_empty_body_to_the_endpoint(endpoint: str, auth: str, kind: str) -> None:
    request = probe_request(endpoint)
    assert (request.endpoint, request.auth, request.kind, request.body) == (endpoint, auth, kind, {})


def test_the_scopes_table_agrees_with_klaviyos_spec() -> None:
    spec = json.loads(require_shared(OPENAPI_SPEC).read_text())
    for endpoint, scopes in SCOPES.items():
        method, _, path = endpoint.partition(" ")
        assert tuple(spec["paths"][path][method.lower()]["x-klaviyo-scopes"]) == scopes, endpoint
