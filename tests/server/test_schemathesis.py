"""Schemathesis against ``/openapi.json`` of the app on a loopback port: answers are what the document says.

Requests are generated from the served document (valid ones, and ones that break it), sent with
the right credentials so they reach decoding, and every answer is checked: no 5xx, a documented
status, the documented content type, headers and schema; broken requests are refused and store
nothing. Bounded example counts keep the whole module well under a minute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case, CheckFunction, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.live import LiveApp, basic, token, webhook

CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
CREDENTIALS = {
    "/firehose": token(),
    "/v2/events": basic(),
    "/v2/bulkevents": basic(),
    "/webhook/{connection}": webhook(),
}
EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 5}
OPERATIONS = [
    *((method, path, mode) for method, path in [("POST", p) for p in CREDENTIALS] for mode in EXAMPLES),
    ("GET", "/healthz", GenerationMode.POSITIVE),
    ("GET", "/readyz", GenerationMode.POSITIVE),
    ("GET", "/metrics", GenerationMode.POSITIVE),
]


@pytest.mark.parametrize(
    ("method", "path", "mode"), OPERATIONS, ids=[f"{m} {p} {mode.value}" for m, p, mode in OPERATIONS]
)
def test_generated_requests_get_documented_answers_and_never_a_server_error(
    tmp_path: Path, method: str, path: str, mode: GenerationMode
) -> None:
    with LiveApp(tmp_path) as app:
        app.ingest.ready = True  # /readyz's 503 is a server-error status by design; test_app covers it
        schema = schemathesis.openapi.from_url(f"{app.url}/openapi.json")
        operation = schema[path][method]
        fixed: dict[str, Any] = {"headers": CREDENTIALS.get(path, {})}
        if "{connection}" in path:
            fixed["path_parameters"] = {"connection": "acme"}
        checks = CHECKS + ([negative_data_rejection] if mode == GenerationMode.NEGATIVE else [])

        @settings(max_examples=EXAMPLES[mode], deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode, **fixed))
        def check(case: Case[Any]) -> None:
            before = len(app.jobs())
            response = case.call_and_validate(base_url=app.url, checks=checks)
            if response.status_code >= 400:
                assert len(app.jobs()) == before, "a refused request stored jobs"

        check()
