"""Bad input against the running app: never a 500; 400s are JSON errors with a pointer; nothing stored.

Random JSON values, random bytes, odd unicode, bodies around and far over the limits, deep
nesting, and a wrong-typed value at every field of a valid batch and of a valid Firehose request.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator

from mparticle_klaviyo.errors import join_pointer
from mparticle_klaviyo.server.openapi import openapi_document
from tests.service.live import Answer, LiveApp, basic, token, webhook
from tests.service.messages import batch, event, firehose_events, now_ms

ENDPOINTS = {"/firehose": token(), "/v2/events": basic(), "/v2/bulkevents": basic(), "/webhook/acme": webhook()}
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Any text, lone surrogates included (JSON can carry them as \ud800 escapes).
ODD_TEXT = st.text(st.characters(exclude_categories=()), max_size=20) | st.sampled_from(
    ["\ud800", "\udfff", "\x00", "\u202e", "e\u0301", "\U0001f600", "\ufeff", "\uff21\uff22\uff23"]
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | ODD_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(ODD_TEXT, inner, max_size=4),
    max_leaves=20,
)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    with LiveApp(tmp_path_factory.mktemp("fuzz")) as live:
        yield live


def encode(value: Any, ascii_only: bool) -> bytes:
    """JSON text of ``value``; non-ASCII output keeps lone surrogates as (invalid) UTF-8 bytes."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def assert_well_refused_or_accepted(app: LiveApp, answer: Answer, jobs_before: int) -> None:
    """No 5xx; an error is a JSON error (with a pointer for 400s) and stores nothing."""
    assert answer.status < 500, answer
    if answer.status < 400:
        return
    assert answer.headers["content-type"].startswith("application/json"), answer
    (error,) = answer.json()["errors"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"], answer
    if answer.status == 400:
        assert error["pointer"] == "" or error["pointer"].startswith("/"), answer
    assert len(app.jobs()) == jobs_before, "a refused request stored jobs"


def post_and_check(app: LiveApp, path: str, body: bytes) -> Answer:
    before = len(app.jobs())
    answer = app.post(path, body, ENDPOINTS[path])
    assert_well_refused_or_accepted(app, answer, before)
    return answer


@FUZZ
@given(path=st.sampled_from(list(ENDPOINTS)), value=JSON_VALUES, ascii_only=st.booleans())
def test_random_json_values_never_cause_a_server_error(app: LiveApp, path: str, value: Any, ascii_only: bool) -> None:
    post_and_check(app, path, encode(value, ascii_only))


@FUZZ
@given(path=st.sampled_from(list(ENDPOINTS)), body=st.binary(max_size=300))
def test_random_bytes_never_cause_a_server_error(app: LiveApp, path: str, body: bytes) -> None:
    post_and_check(app, path, body)


@FUZZ
@given(
    path=st.sampled_from(list(ENDPOINTS)),
    email=ODD_TEXT,
    name=ODD_TEXT,
    key=ODD_TEXT,
    value=ODD_TEXT,
    ascii_only=st.booleans(),
)
def test_odd_unicode_in_every_string_of_a_batch_never_causes_a_server_error(
    app: LiveApp, path: str, email: str, name: str, key: str, value: str, ascii_only: bool
) -> None:
    one = batch(email, [event(name, value, custom_attributes={key: value})], user_attributes={key: value})
    document: Any = [one] if path == "/v2/bulkevents" else one
    if path == "/firehose":
        document = firehose_events(email, settings={key: value})
        document["events"][0].update(name=name, id=value, attributes={key: value})
    post_and_check(app, path, encode(document, ascii_only))


@settings(max_examples=15, deadline=None)
@given(
    path=st.sampled_from(list(ENDPOINTS)),
    depth=st.integers(min_value=1, max_value=20_000),
    where=st.sampled_from(["top", "attribute", "events"]),
)
def test_deep_nesting_anywhere_never_causes_a_server_error(app: LiveApp, path: str, depth: int, where: str) -> None:
    nested = b"[" * depth + b"]" * depth
    marker = b'"@@NESTED@@"'
    document: dict[str, Any] = batch(user_attributes={"deep": "@@NESTED@@"})
    if path == "/firehose":
        document = firehose_events(settings={})
        document["user_attributes"] = {"deep": "@@NESTED@@"}
    if where == "events":
        document["events"] = "@@NESTED@@"
    raw = nested if where == "top" else json.dumps(document).encode().replace(marker, nested)
    if path == "/v2/bulkevents" and where != "top":
        raw = b"[" + raw + b"]"
    post_and_check(app, path, raw)


@settings(max_examples=12, deadline=None)
@given(
    path=st.sampled_from(list(ENDPOINTS)),
    size=st.sampled_from([128 * 1024 - 200, 128 * 1024 + 1, 200 * 1024, 101 * 128 * 1024 + 1, 20 * 1024 * 1024]),
)
def test_bodies_around_and_far_over_the_limits_are_answered_413_or_accepted(app: LiveApp, path: str, size: int) -> None:
    document: Any = batch(user_attributes={"pad": ""})
    padding = size - len(json.dumps(document))
    document["user_attributes"]["pad"] = "x" * max(padding, 0)
    if path == "/firehose":
        document = firehose_events(settings={})
        document["user_attributes"] = {"pad": "x" * max(padding - 400, 0)}
    if path == "/v2/bulkevents":
        document = [document]
    answer = post_and_check(app, path, json.dumps(document).encode())
    # The Events API limits each batch; Firehose and Webhook bodies get the bulk request's limit.
    limit = 128 * 1024 if path.startswith("/v2/") else 100 * 128 * 1024 + 4096
    assert answer.status == (413 if size > limit else 200 if path == "/firehose" else 202), answer


def rich_batch() -> dict[str, Any]:
    """A batch with every field the decoder types, each with a valid value."""
    product = {
        "id": "p1",
        "name": "Gear",
        "brand": "b",
        "category": "c",
        "variant": "v",
        "position": 1,
        "price": 5.0,
        "quantity": 2,
        "coupon_code": "c",
        "total_product_amount": 10,
        "custom_attributes": {"color": "red"},
    }
    return {
        "events": [
            event(
                "Custom",
                "m-1",
                event_id=12,
                custom_attributes={"k": "v"},
                screen_name="Home",
                session_duration_ms=10,
                application_transition_type="application_initialized",
                is_first_run=True,
                is_upgrade=False,
                currency_code="USD",
            ),
            {
                "event_type": "commerce_event",
                "data": {
                    "timestamp_unixtime_ms": now_ms(),
                    "source_message_id": "m-2",
                    "product_action": {
                        "action": "purchase",
                        "checkout_step": 1,
                        "checkout_options": "o",
                        "product_action_list": "l",
                        "product_list_source": "s",
                        "transaction_id": "T-1",
                        "affiliation": "a",
                        "total_amount": 10,
                        "tax_amount": 1,
                        "shipping_amount": 1,
                        "coupon_code": "c",
                        "products": [product],
                    },
                    "promotion_action": {
                        "action": "view",
                        "promotions": [{"id": "pr", "name": "n", "creative": "c", "position": "top"}],
                    },
                    "product_impressions": [{"product_impression_list": "l", "products": [product]}],
                },
            },
        ],
        "user_identities": {"email": "rich@example.com", "mobile_number": "+16175550100"},
        "user_attributes": {"$FirstName": "Ada"},
        "consent_state": {
            "gdpr": {"marketing": {"consented": True, "timestamp_unixtime_ms": 1}},
            "ccpa": {"data_sale_opt_out": {"consented": False}},
        },
        "device_info": {"platform": "iOS"},
        "application_info": {"os": "IOS"},
        "mpid": "123",
        "source_request_id": "req-1",
        "batch_id": 7,
        "environment": "production",
    }


def rich_firehose() -> dict[str, Any]:
    """A Firehose event processing request with every field the decoder types."""
    product = {
        "id": "p1",
        "name": "Gear",
        "brand": "b",
        "category": "c",
        "variant": "v",
        "position": 1,
        "price": 5.0,
        "quantity": 2,
        "coupon_code": "c",
        "total_amount": 10,
        "attributes": {"k": "v"},
    }
    request = firehose_events("rich@example.com", settings={"externalEmailIdentityType": "Email"})
    request.update(
        user_attributes={"$FirstName": "Ada"},
        user_attribute_lists={"tags": ["a"]},
        consent_state={
            "gdpr_consent_state": {"marketing": {"consented": True, "timestamp_unixtime_ms": 1}},
            "ccpa_consent_state": {"data_sale_opt_out": {"consented": False}},
        },
        mpid=123,
    )
    request["events"].append(
        {
            "type": "product_action",
            "id": "fh-2",
            "timestamp_ms": now_ms(),
            "source_id": "s",
            "attributes": {"k": "v"},
            "name": "n",
            "screen_name": "s",
            "session_length_ms": 1,
            "application_state": "foreground",
            "action": "purchase",
            "transaction_id": "T",
            "affiliation": "a",
            "total_amount": 10,
            "tax_amount": 1,
            "shipping_amount": 1,
            "currency_code": "USD",
            "coupon_code": "c",
            "products": [product],
            "promotions": [{"id": "pr", "name": "n", "creative": "c", "position": 1}],
            "impressions": [{"impression_list_name": "l", "products": [product]}],
        }
    )
    return request


# Maps with typed values: the decoder cannot say which key held a bad value, so it points at the map.
# Values of any JSON type: nothing inside them is of a wrong type.
FREE_FORM = {"custom_attributes", "user_attributes", "attributes"}
CANDIDATES: list[Any] = [None, True, 7, 1.5, "text", [1], {"k": 1}]


def fields(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every path below ``value`` where a value of the wrong type could go."""
    if path and path[-1] in FREE_FORM:
        return
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in children:
        yield (*path, key)
        yield from fields(child, (*path, key))


def replaced(document: Any, path: tuple[str | int, ...], value: Any) -> Any:
    copy = json.loads(json.dumps(document))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def wrong_types(document: Any, schema: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], Any, Any]]:
    """(path, wrong value, document) for every field and every value the documented schema refuses there."""
    validator = OAS31Validator({**schema, "components": openapi_document()["components"]})
    for path in fields(document):
        for candidate in CANDIDATES:
            changed = replaced(document, path, candidate)
            if not validator.is_valid(changed):
                yield path, candidate, changed


def names_the_field(answer: Answer, path: tuple[str | int, ...], wrong: Any, prefix: str = "") -> bool:
    """400 pointing at the field (map values by their key too), or into a wrong array or object."""
    if answer.status != 400:
        return False
    pointer, want = answer.error.get("pointer", ""), prefix + join_pointer(*path)
    return pointer == want or (isinstance(wrong, list | dict) and pointer.startswith(want + "/"))


@functools.cache
def cases_for(kind: str) -> tuple[Any, list[tuple[tuple[str | int, ...], Any, Any]]]:
    """The valid document of ``kind`` and its wrong-typed variants (computed once: validation is slow)."""
    if kind == "firehose":
        document = rich_firehose()
        return document, list(wrong_types(document, {"$ref": "#/components/schemas/FirehoseMessage"}))
    document = rich_batch()
    return document, list(wrong_types(document, {"$ref": "#/components/schemas/Batch"}))


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/v2/events", "batch"), ("/webhook/acme", "batch"), ("/firehose", "firehose")],
    ids=["events-api", "webhook", "firehose"],
)
def test_a_wrong_type_at_any_field_is_400_pointing_at_that_field(tmp_path: Path, path: str, kind: str) -> None:
    document, cases = cases_for(kind)
    mistakes: list[str] = []
    with LiveApp(tmp_path) as app:
        assert app.post(path, document, ENDPOINTS[path]).status in (200, 202), "the base document must be valid"
        stored = len(app.jobs())
        for field, wrong, changed in cases:
            answer = app.post(path, changed, ENDPOINTS[path])
            if not names_the_field(answer, field, wrong):
                mistakes.append(f"{join_pointer(*field)} = {wrong!r}: got {answer!r}")
        assert len(app.jobs()) == stored, "a refused request stored jobs"
    assert len(cases) > 100
    assert mistakes == []


def test_a_wrong_type_inside_a_bulk_points_into_its_batch(tmp_path: Path) -> None:
    _, cases = cases_for("batch")
    mistakes: list[str] = []
    with LiveApp(tmp_path) as app:
        for field, wrong, changed in cases:
            answer = app.post("/v2/bulkevents", [batch("first@example.com"), changed], basic())
            if not names_the_field(answer, field, wrong, prefix="/1"):
                mistakes.append(f"{join_pointer(*field)} = {wrong!r}: got {answer!r}")
        assert app.jobs() == []
    assert mistakes == []


def test_a_map_value_missing_a_required_field_is_pointed_at_by_its_key(tmp_path: Path) -> None:
    document = rich_batch()
    document["consent_state"]["gdpr"]["marketing"] = {"timestamp_unixtime_ms": 1}
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", document, basic())
    assert (answer.status, answer.error["pointer"]) == (400, "/consent_state/gdpr/marketing/consented")
