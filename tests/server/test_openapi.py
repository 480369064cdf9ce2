"""``/openapi.json`` is true: every served route is documented with every status it returns, and vice versa."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from openapi_schema_validator import OAS31Validator

from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.server.app import create_app
from mparticle_klaviyo.server.openapi import openapi_document
from tests.service.live import Answer, LiveApp, basic, make_config, token, webhook
from tests.service.messages import batch, event, firehose_events, outbound_batch, registration_request

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
Operation = tuple[str, str]  # (METHOD, path template)
Probe = tuple[Operation, Callable[[LiveApp], Answer]]


def documented() -> dict[Operation, set[int]]:
    """Each documented operation with its documented statuses."""
    return {
        (method.upper(), path): {int(status) for status in operation["responses"]}
        for path, item in openapi_document()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def served_routes() -> set[Operation]:
    """Each (method, path template) the app's router serves."""
    app = create_app(make_config(Path("unused.sqlite3")), None, Metrics(), lambda _: None)  # type: ignore[arg-type]
    routes: set[Operation] = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        routes.add((route.method, str(info.get("path") or info.get("formatter"))))
    return routes


def validator(schema: dict[str, Any]) -> OAS31Validator:
    """A validator for ``schema`` that resolves the document's component references."""
    # "#/components/..." references resolve against the root schema: carry the components along.
    return OAS31Validator({**schema, "components": openapi_document()["components"]})


def too_big(size: int) -> bytes:
    return b'{"events": [], "user_attributes": {"a": "' + b"x" * size + b'"}}'


def fill_backlog(app: LiveApp) -> None:
    assert app.post("/v2/events", batch("fill@example.com", [event(message_id="fill")]), basic()).status == 202


def second(email: str) -> dict[str, Any]:
    return batch(email, [event(message_id=email)])


def ready(app: LiveApp) -> Answer:
    app.ingest.ready = True
    return app.get("/readyz")


# Requests that make every status each route can answer; run against an app with small limits.
SMALL: dict[str, Any] = {"max_batch_bytes": 1024, "max_batches_per_request": 1, "body_idle_timeout_s": 0.2}
PROBES: list[Probe] = [
    (("POST", "/firehose"), lambda app: app.post("/firehose", registration_request())),
    (("POST", "/firehose"), lambda app: app.post("/firehose", b"{", token())),
    (("POST", "/firehose"), lambda app: app.post("/firehose", firehose_events())),
    (("POST", "/firehose"), lambda app: app.post("/firehose", firehose_events(), token("wrong"))),
    (("POST", "/firehose"), lambda app: app.post("/firehose", too_big(8000), token())),
    (("POST", "/v2/events"), lambda app: app.post("/v2/events", batch("e@example.com"), basic())),
    (("POST", "/v2/events"), lambda app: app.post("/v2/events", b"[", basic())),
    (("POST", "/v2/events"), lambda app: app.post("/v2/events", batch())),
    (("POST", "/v2/events"), lambda app: app.post("/v2/events", batch(), basic("k", "s"))),
    (("POST", "/v2/events"), lambda app: app.post("/v2/events", too_big(2000), basic())),
    (("POST", "/v2/bulkevents"), lambda app: app.post("/v2/bulkevents", [second("b@example.com")], basic())),
    (("POST", "/v2/bulkevents"), lambda app: app.post("/v2/bulkevents", {}, basic())),
    (("POST", "/v2/bulkevents"), lambda app: app.post("/v2/bulkevents", [batch()])),
    (("POST", "/v2/bulkevents"), lambda app: app.post("/v2/bulkevents", [batch()], basic("k", "s"))),
    (("POST", "/v2/bulkevents"), lambda app: app.post("/v2/bulkevents", [batch(), batch()], basic())),
    (("POST", "/webhook/{connection}"), lambda app: app.post("/webhook/acme", outbound_batch(), webhook())),
    (("POST", "/webhook/{connection}"), lambda app: app.post("/webhook/acme", b"{", webhook())),
    (("POST", "/webhook/{connection}"), lambda app: app.post("/webhook/acme", outbound_batch())),
    (("POST", "/webhook/{connection}"), lambda app: app.post("/webhook/acme", outbound_batch(), webhook("x"))),
    (("POST", "/webhook/{connection}"), lambda app: app.post("/webhook/acme", too_big(8000), webhook())),
    *(
        ((method_path), probe)
        for method_path, path, auth in [
            (("POST", "/firehose"), "/firehose", token()),
            (("POST", "/v2/events"), "/v2/events", basic()),
            (("POST", "/v2/bulkevents"), "/v2/bulkevents", basic()),
            (("POST", "/webhook/{connection}"), "/webhook/acme", webhook()),
        ]
        for probe in (
            lambda app, path=path, auth=auth: app.post(path, b"{}", {**auth, "Content-Encoding": "br"}),
            lambda app, path=path, auth=auth: app.stall(path, auth),
        )
    ),
    (("GET", "/healthz"), lambda app: app.get("/healthz")),
    (("GET", "/readyz"), lambda app: app.get("/readyz")),
    (("GET", "/readyz"), ready),
    (("GET", "/metrics"), lambda app: app.get("/metrics")),
    (("GET", "/openapi.json"), lambda app: app.get("/openapi.json")),
]
# The same, once the backlog is above the high-water mark.
BUSY_PROBES: list[Probe] = [
    (("POST", "/firehose"), lambda app: app.post("/firehose", firehose_events("busy@example.com"), token())),
    (("POST", "/v2/events"), lambda app: app.post("/v2/events", second("busy@example.com"), basic())),
    (("POST", "/v2/bulkevents"), lambda app: app.post("/v2/bulkevents", [second("busy@example.com")], basic())),
    (("POST", "/webhook/{connection}"), lambda app: app.post("/webhook/acme", second("busy@example.com"), webhook())),
]
# With the store broken (a failing disk), every ingest route answers 503 and stores nothing.
BROKEN_PROBES: list[Probe] = BUSY_PROBES


def test_every_served_route_is_documented_and_every_documented_route_is_served() -> None:
    assert served_routes() == set(documented())


def test_every_status_a_route_returns_is_documented_and_every_documented_status_is_returned(tmp_path: Path) -> None:
    seen: dict[Operation, set[int]] = {operation: set() for operation in documented()}
    with LiveApp(tmp_path / "small", **SMALL) as app:
        for operation, probe in PROBES:
            seen[operation].add(probe(app).status)
    with LiveApp(tmp_path / "busy", high_water_mark=1) as app:
        fill_backlog(app)
        for operation, probe in BUSY_PROBES:
            seen[operation].add(probe(app).status)
    with LiveApp(tmp_path / "broken") as app:
        app.break_store()
        for operation, probe in BROKEN_PROBES:
            seen[operation].add(probe(app).status)
    assert seen == documented()


def test_every_error_answer_matches_the_documented_error_schema(tmp_path: Path) -> None:
    error_schema = validator({"$ref": "#/components/schemas/Error"})
    with LiveApp(tmp_path / "small", **SMALL) as app:
        errors = [answer for _, probe in PROBES if (answer := probe(app)).status >= 400 and answer.status != 503]
    assert len(errors) >= 15
    for answer in errors:
        assert answer.headers["content-type"].startswith("application/json")
        error_schema.validate(answer.json())


def test_busy_answers_carry_the_documented_retry_after_header(tmp_path: Path) -> None:
    with LiveApp(tmp_path / "busy", high_water_mark=1) as app:
        fill_backlog(app)
        answers = {operation: probe(app) for operation, probe in BUSY_PROBES}
    paths = openapi_document()["paths"]
    for (method, path), answer in answers.items():
        response = paths[path][method.lower()]["responses"][str(answer.status)]
        assert "Retry-After" in response["headers"]
        assert int(answer.headers["retry-after"]) >= 1


def test_the_batches_we_accept_are_valid_against_the_documented_batch_schema() -> None:
    body = openapi_document()["paths"]["/v2/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    validator(body).validate(batch())
    validator(body).validate(outbound_batch())


def test_a_firehose_request_we_accept_is_valid_against_the_documented_schema() -> None:
    validator({"$ref": "#/components/schemas/EventProcessingRequest"}).validate(firehose_events(settings={"a": "b"}))


def test_bulk_arrays_are_documented_with_their_limit_of_100_batches() -> None:
    assert openapi_document()["components"]["schemas"]["BulkBatches"]["maxItems"] == 100


def test_firehose_registration_is_documented_as_needing_no_credentials() -> None:
    security = openapi_document()["paths"]["/firehose"]["post"]["security"]
    assert {} in security
    assert {"firehoseToken": []} in security


def test_the_served_document_is_the_generated_one(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.get("/openapi.json")
    assert answer.json() == openapi_document()
    assert answer.json()["openapi"].startswith("3.1")


def test_an_internal_error_is_a_json_503_with_retry_after_and_nothing_stored(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        app.break_store()
        answer = app.post("/v2/events", second("broken@example.com"), basic())
    assert (answer.status, answer.error["code"]) == (503, "UNAVAILABLE")
    assert int(answer.headers["retry-after"]) >= 1
    assert app.jobs() == []
