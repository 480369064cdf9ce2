"""The OpenAPI 3.1 document of the ingest API, generated from the same models that decode it.

Request schemas come from the msgspec wire models, so the document cannot drift from what
the server accepts; ``tests/service/test_openapi.py`` checks routes and statuses against it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from mparticle_klaviyo import __version__
from mparticle_klaviyo.mparticle.batch import Batch
from mparticle_klaviyo.mparticle.firehose import EVENT_PROCESSING_REQUEST, EventProcessingRequest

_REF = "#/components/schemas/{name}"
FIREHOSE_TYPES = (
    "module_registration_request",
    "event_processing_request",
    "audience_subscription_request",
    "audience_membership_change_request",
    "dsr_processing_request",
)
_ERROR = {
    "type": "object",
    "required": ["errors"],
    "properties": {
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string"},
                    "message": {"type": "string"},
                    "pointer": {"type": "string", "description": "JSON pointer to the offending field"},
                },
            },
        }
    },
}


_STATUS = {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(name="Error")}}},
    }


def _busy(description: str) -> dict[str, Any]:
    response = _error(description)
    response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait"}}
    return response


_COMMON = {
    "400": _error("Malformed JSON or a field of the wrong type; the pointer names it"),
    "401": _error("Missing credentials"),
    "403": _error("Wrong credentials"),
    "408": _error("The body did not arrive within the read deadlines; the connection is closed"),
    "413": _error("Body, batch or bulk array over the size limits"),
    "415": _error("A Content-Encoding other than gzip, deflate or none"),
}


def _body(ref: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": _REF.format(name=ref)}}}}


def _operation(
    summary: str, body: dict[str, Any], ok: dict[str, Any], busy: str, security: str | None
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "requestBody": body,
        "responses": {
            **ok,
            **_COMMON,
            "503": _busy(
                "Internal error or job store unavailable (nothing stored), memory budget busy, or, for Firehose"
                " and Webhook, backlog full; retry later"
            ),
            busy: _busy("Backlog above its high-water mark; retry later"),
        },
    }
    if security:
        operation["security"] = [{security: []}]
    return operation


def _get(summary: str, description: str, media_type: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "responses": {"200": {"description": description, "content": {media_type: {"schema": schema}}}},
    }


@cache
def openapi_document() -> dict[str, Any]:
    """The document served at ``/openapi.json``."""
    (batch, _), components = msgspec.json.schema_components([Batch, EventProcessingRequest], ref_template=_REF)
    components["BulkBatches"] = {"type": "array", "maxItems": 100, "items": batch}
    # Every Firehose message type is posted to /firehose; event processing requests are decoded
    # further (registration: 200; audience: 400 UNSUPPORTED; DSR erasure: 200 with a
    # dsr_processing_response where the connection sets forward_erasure, else 400 UNSUPPORTED).
    components["EventProcessingRequest"]["properties"]["type"] = {"type": "string", "enum": [EVENT_PROCESSING_REQUEST]}
    components["OtherFirehoseMessage"] = {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "enum": [t for t in FIREHOSE_TYPES if t != EVENT_PROCESSING_REQUEST]},
            "id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    }
    components["FirehoseMessage"] = {
        "oneOf": [
            {"$ref": _REF.format(name="EventProcessingRequest")},
            {"$ref": _REF.format(name="OtherFirehoseMessage")},
        ]
    }
    components["Error"] = _ERROR
    accepted = {"202": {"description": "Durably queued"}}
    firehose_ok = {
        "200": {
            "description": "Registration, event processing or DSR processing response",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    }
    paths = {
        "/firehose": {
            "post": {
                **_operation(
                    "mParticle Firehose (registration needs no auth)",
                    _body("FirehoseMessage"),
                    firehose_ok,
                    "503",
                    "firehoseToken",
                ),
                # module_registration_request is answered without credentials.
                "security": [{"firehoseToken": []}, {}],
            }
        },
        "/v2/events": {
            "post": _operation(
                "Events API: one batch",
                {"required": True, "content": {"application/json": {"schema": batch}}},
                accepted,
                "429",
                "eventsApiBasic",
            )
        },
        "/v2/bulkevents": {
            "post": _operation("Events API: up to 100 batches", _body("BulkBatches"), accepted, "429", "eventsApiBasic")
        },
        "/webhook/{connection}": {
            "post": {
                **_operation(
                    "mParticle Webhook output",
                    {
                        "required": True,
                        "content": {
                            "application/json": {"schema": {"anyOf": [batch, {"type": "array", "items": batch}]}}
                        },
                    },
                    accepted,
                    "503",
                    "webhookAuthorization",
                ),
                "parameters": [{"name": "connection", "in": "path", "required": True, "schema": {"type": "string"}}],
            }
        },
        "/healthz": {"get": _get("Liveness", "Alive", "application/json", _STATUS)},
        "/readyz": {
            "get": {
                "summary": "Readiness",
                "responses": {
                    "200": {"description": "Ready", "content": {"application/json": {"schema": _STATUS}}},
                    "503": {
                        "description": "Starting, stopping, or the job store is unavailable",
                        "content": {"application/json": {"schema": _STATUS}},
                    },
                },
            }
        },
        "/metrics": {"get": _get("Prometheus metrics", "Text exposition format", "text/plain", {"type": "string"})},
        "/openapi.json": {"get": _get("This document", "OpenAPI 3.1 document", "application/json", {"type": "object"})},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "mparticle-klaviyo ingest", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "firehoseToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "Token <token>",
                },
                "eventsApiBasic": {"type": "http", "scheme": "basic"},
                "webhookAuthorization": {"type": "apiKey", "in": "header", "name": "Authorization"},
            },
        },
    }
