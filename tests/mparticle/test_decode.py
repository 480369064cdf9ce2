"""Bytes -> UserBatches: routing by shape, and an InputError with a JSON pointer for bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.mparticle.decode import decode_batch, decode_bulk, decode_document, decode_firehose
from tests.mapping.builders import batch_doc, custom, encode


def error_of(raw: bytes) -> InputError:
    with pytest.raises(InputError) as caught:
        decode_document(raw)
    return caught.value


def test_a_batch_object_decodes_to_one_batch() -> None:
    batches = decode_document(encode(batch_doc(custom())))
    assert [(b.source, len(b.events)) for b in batches] == [("batch", 1)]


def test_a_bulk_array_decodes_to_its_batches_in_order() -> None:
    docs = [batch_doc(custom(), source_request_id=f"r{n}") for n in range(3)]
    assert [b.batch_key for b in decode_document(encode(docs))] == ["r0", "r1", "r2"]


def test_an_empty_bulk_array_decodes_to_no_batches() -> None:
    assert decode_document(b"[]") == []


def test_a_firehose_event_processing_request_decodes_to_a_firehose_batch() -> None:
    raw = encode({"type": "event_processing_request", "id": "x", "events": [{"type": "session_start", "id": "e"}]})
    assert [(b.source, b.batch_key, len(b.events)) for b in decode_document(raw)] == [("firehose", "x", 1)]


def test_leading_whitespace_is_allowed() -> None:
    assert len(decode_document(b"\n\t  " + encode(batch_doc()))) == 1


def test_unknown_fields_are_ignored() -> None:
    batch = decode_document(encode(batch_doc(custom(new_field={"x": 1}), brand_new_top_level=[1, 2])))[0]
    assert batch.events[0].name == "Viewed Article"


@pytest.mark.parametrize(
    "kind",
    [
        "module_registration_request",
        "module_registration_response",
        "event_processing_response",
        "audience_subscription_request",
        "audience_membership_change_request",
        "dsr_processing_request",
    ],
)
def test_non_event_firehose_messages_are_rejected_naming_their_type(kind: str) -> None:
    error = error_of(encode({"type": kind, "id": "x", "timestamp_ms": 1, "firehose_version": "3.2.0"}))
    assert error.pointer == "/type"
    assert error.message == f"{kind!r} is not an event message (expected 'event_processing_request' or a batch)"


def test_an_object_sharing_no_field_with_a_batch_is_rejected() -> None:
    error = error_of(encode({"method": "POST", "path": "/v2/events", "body": batch_doc()}))
    assert error.pointer == ""
    assert error.message.startswith("not an mParticle batch: it has none of the fields events, user_identities")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty document: expected a JSON object or array"),
        (b" \n ", "empty document: expected a JSON object or array"),
        (b'{"events": [', "malformed JSON: the document ends early"),
        (b'{"events": [],}', "malformed JSON: trailing comma (byte 13)"),
        (b'{"events": []} extra', "malformed JSON: text after the JSON value (byte 15)"),
        (b"{events: []}", "malformed JSON: unexpected character 'e' (byte 1)"),
        (b"42", "expected a JSON object (a batch or Firehose request) or an array of batches"),
        (b'"a batch"', "expected a JSON object (a batch or Firehose request) or an array of batches"),
        (b"null", "expected a JSON object (a batch or Firehose request) or an array of batches"),
        (b"nope", "malformed JSON: unexpected character 'n' (byte 0)"),
    ],
)
def test_malformed_or_non_object_documents_are_rejected_with_a_reason(raw: bytes, message: str) -> None:
    error = error_of(raw)
    assert (error.pointer, error.message) == ("", message)


@pytest.mark.parametrize(
    ("doc", "pointer", "message"),
    [
        (
            {"events": [{"event_type": "custom_event", "data": {"timestamp_unixtime_ms": "soon"}}]},
            "/events/0/data/timestamp_unixtime_ms",
            "Expected int | float | null, got str",
        ),
        (
            {"events": [{"event_type": "custom_event", "data": {"custom_attributes": ["a"]}}]},
            "/events/0/data/custom_attributes",
            "Expected object | null, got array",
        ),
        ({"events": [{"data": {}}]}, "/events/0/event_type", "required field is missing"),
        ({"events": [{"event_type": 3}]}, "/events/0/event_type", "Expected str, got int"),
        ({"events": [{"event_type": "x", "data": None}]}, "/events/0/data", "Expected object, got null"),
        ({"events": {}}, "/events", "Expected array | null, got object"),
        ({"user_identities": "a@example.com"}, "/user_identities", "Expected object | array | null, got str"),
        (
            {"user_identities": {"email": {"value": "a@example.com"}}},
            "/user_identities/email",
            "Expected str | int | float | null, got object",
        ),
        ({"user_identities": [{"identity": "x"}]}, "/user_identities/0/identity_type", "required field is missing"),
        ({"user_attributes": ["a"]}, "/user_attributes", "Expected object | null, got array"),
        ({"mpid": 1.5}, "/mpid", "Expected int | str | null, got float"),
        ({"mpid": True}, "/mpid", "Expected int | str | null, got bool"),
        ({"device_info": {"platform": 7}}, "/device_info/platform", "Expected str | null, got int"),
        (
            {"events": [{"event_type": "commerce_event", "data": {"product_action": {"products": []}}}]},
            "/events/0/data/product_action/action",
            "required field is missing",
        ),
        (
            {
                "events": [
                    {
                        "event_type": "commerce_event",
                        "data": {"product_action": {"action": "x", "products": [{"price": {}}]}},
                    }
                ]
            },
            "/events/0/data/product_action/products/0/price",
            "Expected int | float | str | null, got object",
        ),
        (
            {"events": [{"event_type": "session_start", "data": {"timestamp_unixtime_ms": 1e400}}]},
            "/events/0/data/timestamp_unixtime_ms",
            "number out of range",
        ),
    ],
)
def test_a_wrong_type_is_rejected_with_a_pointer_to_the_field(doc: dict[str, Any], pointer: str, message: str) -> None:
    raw = json.dumps(doc).replace("Infinity", "1e400").encode()
    error = error_of(raw)
    assert (error.pointer, error.message) == (pointer, message)


def test_a_bad_batch_inside_a_bulk_array_is_pointed_at_by_position() -> None:
    raw = encode([batch_doc(), {"events": [{"event_type": "custom_event", "data": {"event_name": 5}}]}])
    error = error_of(raw)
    assert (error.pointer, error.message) == ("/1/events/0/data/event_name", "Expected str | null, got int")


def test_a_bulk_array_of_non_objects_is_rejected_at_the_first_item() -> None:
    error = error_of(b'[{"events": []}, 3]')
    assert (error.pointer, error.message) == ("/1", "Expected object, got int")


@pytest.mark.parametrize(
    ("doc", "pointer", "message"),
    [
        (
            {"user_identities": [{"type": "email", "value": 5}]},
            "/user_identities/0/value",
            "Expected str | null, got int",
        ),
        (
            {"account": {"account_settings": {"listId": 5}}},
            "/account/account_settings/listId",
            "Expected str, got int",
        ),
        ({"events": [{"id": "e"}]}, "/events/0/type", "required field is missing"),
        (
            {"events": [{"type": "custom_event", "timestamp_ms": "x"}]},
            "/events/0/timestamp_ms",
            "Expected int | float | null, got str",
        ),
    ],
)
def test_a_wrong_type_in_a_firehose_request_is_pointed_at(doc: dict[str, Any], pointer: str, message: str) -> None:
    error = error_of(encode({"type": "event_processing_request", "id": "r", **doc}))
    assert (error.pointer, error.message) == (pointer, message)


def test_a_bad_value_inside_a_map_is_pointed_at_through_its_escaped_key() -> None:
    error = error_of(encode({"consent_state": {"gdpr": {"a/b~c": {"consented": "yes"}}}}))
    assert error.pointer == "/consent_state/gdpr/a~1b~0c/consented"
    assert error.message == "Expected bool, got str"


@pytest.mark.parametrize(
    ("mpid", "expected"),
    [
        ("18446744073709551616", "18446744073709551616"),
        ("9223372036854775808", "9223372036854775808"),
        ("-9223372036854775809", "-9223372036854775809"),
        ("1234567890123456789", "1234567890123456789"),
        ("100000000000000000000000000000", "100000000000000000000000000000"),
        ('"264200868161219981"', "264200868161219981"),
    ],
)
def test_mpids_beyond_two_to_the_53_are_kept_exactly(mpid: str, expected: str) -> None:
    raw = b'{"mpid": ' + mpid.encode() + b', "user_identities": {"email": "a@example.com"}}'
    assert decode_document(raw)[0].mpid == expected


def test_emoji_and_right_to_left_text_are_kept() -> None:
    attributes = {"greeting": "שלום עולם", "arabic": "مرحبا", "emoji": "🎉👩‍👩‍👧", "mixed ‮key": "x"}
    batch = decode_document(encode(batch_doc(custom("🛒 Checkout ✓", custom_attributes=attributes))))[0]
    assert (batch.events[0].name, batch.events[0].attributes) == ("🛒 Checkout ✓", attributes)


def test_an_escaped_surrogate_pair_is_decoded_to_its_character() -> None:
    raw = b'{"user_identities": {"email": "\\ud83d\\ude00@example.com"}}'
    assert decode_document(raw)[0].identities == {"email": "\U0001f600@example.com"}


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\udc00", b"\\ud800\\u0041", b"\\ud83d"])
def test_a_lone_surrogate_escape_is_rejected_as_malformed_json(escape: bytes) -> None:
    raw = b'{"events": [{"event_type": "custom_event", "data": {"event_name": "x' + escape + b'"}}]}'
    error = error_of(raw)
    assert (error.pointer, error.message) == (
        "/events/0/data/event_name",
        "malformed JSON: a string holds half of a UTF-16 surrogate pair",
    )


def test_nul_characters_in_text_are_kept() -> None:
    batch = decode_document(encode(batch_doc(custom("a\u0000b", custom_attributes={"k\u0000": "\u0000"}))))[0]
    assert (batch.events[0].name, batch.events[0].attributes) == ("a\u0000b", {"k\u0000": "\u0000"})


@pytest.mark.parametrize(
    "raw",
    [b'{"user_identities": {"email": "a\xff@example.com"}}', b'{"user_attributes": {"\xc3": 1}}', b"[\xfe]"],
)
def test_bytes_that_are_not_utf8_are_rejected(raw: bytes) -> None:
    error = error_of(raw)
    assert error.pointer == ""
    assert error.message.startswith("malformed JSON")


def test_absurdly_deep_nesting_is_rejected_not_a_crash() -> None:
    depth = 100_000
    raw = b'{"user_attributes": {"deep": ' + b"[" * depth + b"]" * depth + b"}}"
    assert error_of(raw).message == "malformed JSON: nested too deeply"


def test_moderately_deep_attributes_decode() -> None:
    value: Any = "leaf"
    for _ in range(50):
        value = {"k": value}
    batch = decode_document(encode(batch_doc(attributes={"deep": value})))[0]
    assert batch.user_attributes["deep"] == value


def test_a_huge_body_decodes() -> None:
    events = [custom(f"E{n}", custom_attributes={"n": n}) for n in range(20_000)]
    big = "x" * 5_000_000
    batch = decode_document(encode(batch_doc(*events, attributes={"big": big})))[0]
    assert (len(batch.events), batch.events[-1].name, len(batch.user_attributes["big"])) == (
        20_000,
        "E19999",
        5_000_000,
    )


def test_decode_batch_takes_exactly_one_batch_object() -> None:
    assert decode_batch(encode(batch_doc(custom()))).events[0].name == "Viewed Article"
    with pytest.raises(InputError) as caught:
        decode_batch(b"[]")
    assert (caught.value.pointer, caught.value.message) == ("", "Expected object, got array")


def test_decode_bulk_takes_exactly_an_array() -> None:
    assert len(decode_bulk(encode([batch_doc(), batch_doc()]))) == 2
    with pytest.raises(InputError) as caught:
        decode_bulk(b"{}")
    assert (caught.value.pointer, caught.value.message) == ("", "Expected array, got object")


def test_decode_firehose_requires_the_type_field() -> None:
    assert decode_firehose(encode({"type": "event_processing_request"})).source == "firehose"
    with pytest.raises(InputError) as caught:
        decode_firehose(b'{"events": []}')
    assert (caught.value.pointer, caught.value.message) == ("/type", "required field is missing")


@pytest.mark.parametrize("decoder", [decode_batch, decode_bulk, decode_firehose])
def test_every_decoder_rejects_bytes_that_are_not_utf8(decoder: Any) -> None:
    with pytest.raises(InputError) as caught:
        decoder(b'{"type": "\xff", "mpid": "\xff"}' if decoder is not decode_bulk else b'[{"mpid": "\xff"}]')
    assert caught.value.message == "malformed JSON: not valid UTF-8 text"
