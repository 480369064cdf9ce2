"""Decode errors are diagnosed by our own checks, so no library's wording reaches a client."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.json_errors import (
    LONE_SURROGATE,
    NOT_A_NUMBER,
    NOT_UTF8,
    TOO_DEEP,
    decode_checked,
    explain,
    syntax_problem,
)
from mparticle_klaviyo.mparticle.batch import Batch
from mparticle_klaviyo.mparticle.firehose import EventProcessingRequest

NOT_FOUND = "the document does not have the expected structure"


class RefusingDecoder:
    """A decoder that fails the way a given msgspec release does, with that release's words."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    @property
    def type(self) -> Any:
        return Batch

    def decode(self, buf: bytes, /) -> Batch:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),  # msgspec 0.22 and older
        msgspec.DecodeError("Invalid UTF-8 encoded string"),  # msgspec 0.23
        msgspec.DecodeError("some future wording"),
    ],
    ids=["msgspec-0.22", "msgspec-0.23", "reworded"],
)
def test_bytes_that_are_not_utf8_get_one_error_whatever_the_decoder_says(error: Exception) -> None:
    with pytest.raises(InputError) as caught:
        decode_checked(RefusingDecoder(error), b'{"user_attributes": {"a": "\xff"}}')
    assert (caught.value.pointer, caught.value.message) == ("", NOT_UTF8)


def test_a_decoder_message_never_reaches_the_error() -> None:
    with pytest.raises(InputError) as caught:
        decode_checked(RefusingDecoder(msgspec.ValidationError("Expected `gibberish`")), b'{"mpid": 1.5}')
    assert (caught.value.pointer, caught.value.message) == ("/mpid", "Expected int | str | null, got float")


def test_real_msgspec_decoders_pass_through_what_they_decode() -> None:
    assert decode_checked(msgspec.json.Decoder(Batch), b'{"mpid": 7}').mpid == 7


def test_recursion_in_the_decoder_is_nested_too_deeply() -> None:
    with pytest.raises(InputError) as caught:
        decode_checked(RefusingDecoder(RecursionError()), b"[]")
    assert caught.value.message == TOO_DEEP


@pytest.mark.parametrize(
    ("raw", "kind", "message"),
    [
        (b"\xfe{}", "not_utf8", NOT_UTF8),
        (b"[" * 5000 + b"]" * 5000, "too_deep", TOO_DEEP),
        (b"[NaN]", "not_json_number", NOT_A_NUMBER),
        (b'{"a": -Infinity}', "not_json_number", NOT_A_NUMBER),
        (b'{"events": [', "truncated", "malformed JSON: the document ends early"),
        (b'{"a": "unterminated', "syntax", "malformed JSON: unexpected character '\"' (byte 6)"),
        (b'{"a": 1} {"b": 2}', "trailing", "malformed JSON: text after the JSON value (byte 9)"),
        (b"[1, 2, ]", "syntax", "malformed JSON: trailing comma (byte 5)"),
        (b'{"\xc3\xa9": tru}', "syntax", "malformed JSON: unexpected character 't' (byte 7)"),
        (b'"\\ud800"', "syntax", LONE_SURROGATE),
    ],
)
def test_each_way_of_not_being_json_is_named(raw: bytes, kind: str, message: str) -> None:
    problem = syntax_problem(raw)
    assert problem is not None
    assert (problem.kind, problem.message) == (kind, message)


def test_byte_offsets_count_utf8_bytes_not_characters() -> None:
    problem = syntax_problem('{"é€": x}'.encode())
    assert problem is not None
    assert problem.message == "malformed JSON: unexpected character 'x' (byte 10)"


@pytest.mark.parametrize("raw", [b"{}", b"[]", b"null", b' {"a": [1, 2.5, "x", true]} \n', b'"\\ud83d\\ude00"'])
def test_well_formed_json_has_no_syntax_problem(raw: bytes) -> None:
    assert syntax_problem(raw) is None


@pytest.mark.parametrize(
    ("doc", "pointer", "message"),
    [
        ({"mpid": 1.5}, "/mpid", "Expected int | str | null, got float"),
        ({"events": [{"event_type": "x"}, {}]}, "/events/1/event_type", "required field is missing"),
        ({"user_attributes": {"a/b": 1}, "consent_state": {"gdpr": {"p": {}}}}, "/consent_state/gdpr/p/consented",
         "required field is missing"),
        ({"user_identities": {"customer~id": []}}, "/user_identities/customer~0id",
         "Expected str | int | float | null, got array"),
        ({"events": [{"event_type": "x", "data": {"timestamp_unixtime_ms": True}}]},
         "/events/0/data/timestamp_unixtime_ms", "Expected int | float | null, got bool"),
    ],
)  # fmt: skip
def test_a_shape_error_is_located_by_walking_the_type(doc: Any, pointer: str, message: str) -> None:
    error = explain(json.dumps(doc).encode(), Batch)
    assert (error.pointer, error.message) == (pointer, message)


def test_the_first_error_in_document_order_is_reported() -> None:
    raw = b'{"mpid": true, "events": {}}'
    assert explain(raw, Batch).pointer == "/mpid"
    raw = b'{"events": {}, "mpid": true}'
    assert explain(raw, Batch).pointer == "/events"


def test_a_repeated_key_is_checked_at_each_occurrence() -> None:
    assert explain(b'{"mpid": 1.5, "mpid": 2}', Batch).pointer == "/mpid"


def test_a_number_too_large_for_a_float_is_out_of_range() -> None:
    error = explain(b'{"timestamp_ms": 1e999, "type": "x"}', EventProcessingRequest)
    assert (error.pointer, error.message) == ("/timestamp_ms", "number out of range")


def test_a_document_that_fits_gets_a_plain_message_and_no_guess() -> None:
    assert explain(b'{"mpid": 1}', Batch).message == NOT_FOUND


# Documents near a batch: valid values and wrong ones at every level.
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=3)
)
_ANY = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
)
_EVENT = st.fixed_dictionaries(
    {},
    optional={
        "event_type": _ANY,
        "data": st.fixed_dictionaries(
            {}, optional={"timestamp_unixtime_ms": _ANY, "custom_attributes": _ANY, "product_action": _ANY}
        )
        | _ANY,
    },
)
_BATCH = st.fixed_dictionaries(
    {},
    optional={
        "events": st.lists(_EVENT, max_size=3) | _ANY,
        "user_identities": st.dictionaries(st.text(max_size=3), _ANY, max_size=3) | _ANY,
        "consent_state": st.fixed_dictionaries({}, optional={"gdpr": _ANY}) | _ANY,
        "mpid": _ANY,
        "device_info": _ANY,
    },
)


@settings(max_examples=400, deadline=None)
@given(_BATCH)
def test_whenever_msgspec_refuses_a_document_the_walk_finds_an_existing_place(doc: dict[str, Any]) -> None:
    raw = json.dumps(doc).encode()
    try:
        msgspec.json.decode(raw, type=Batch)
    except msgspec.ValidationError:
        error = explain(raw, Batch)
        assert error.message != NOT_FOUND
        assert _parent_exists(doc, error.pointer), error
    else:
        assert explain(raw, Batch).message == NOT_FOUND


def _parent_exists(doc: Any, pointer: str) -> bool:
    """Every token but the last names an existing place (the last may be a missing field)."""
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    node = doc
    for token in tokens[:-1]:
        if isinstance(node, list):
            node = node[int(token)]
        elif isinstance(node, dict) and token in node:
            node = node[token]
        else:
            return False
    return True
