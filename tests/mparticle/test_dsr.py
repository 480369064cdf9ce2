"""Firehose ``dsr_processing_request``: erasures are read; anything else is refused by pointer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.mparticle.dsr import decode_erasure


def request(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "type": "dsr_processing_request",
        "id": "417977b5-1df0-4f3e-908a-dc5a4953f11c",
        "timestamp_ms": 1714592744067,
        "firehose_version": "3.2.0",
        "subject_request_id": "req-1",
        "subject_request_type": "erasure",
        "subject_identities": {"email": {"encoding": "raw", "value": " ada@example.com "}},
        "regulation": "gdpr",
    }
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not None}).encode()


def pointer_of(raw: bytes) -> str:
    with pytest.raises(InputError) as caught:
        decode_erasure(raw)
    return caught.value.pointer


def test_mparticles_own_example_is_an_erasure_of_its_raw_identities(mparticle_fixtures: Path) -> None:
    raw = (mparticle_fixtures / "firehose-sdk" / "DsrProcessingRequest.json").read_bytes()
    erasure = decode_erasure(raw)
    assert erasure.request_id == "1e2c8cf4-f985-4398-b482-a520860d3bf6"
    assert erasure.identities["email"] == "jane.doe@example.com"
    assert erasure.regulation == "gdpr"


def test_identities_are_trimmed_and_named_canonically() -> None:
    raw = request(subject_identities={"Other_ID_2": {"encoding": "raw", "value": " x@y.io "}})
    assert decode_erasure(raw).identities == {"other2": "x@y.io"}


def test_hashed_and_empty_identities_are_left_out() -> None:
    identities = {"email": {"encoding": "sha256", "value": "ab12"}, "mobile_number": {"encoding": "raw", "value": " "}}
    assert pointer_of(request(subject_identities=identities)) == "/subject_identities"


@pytest.mark.parametrize(
    ("changes", "pointer"),
    [
        ({"subject_request_type": "access"}, "/subject_request_type"),
        ({"subject_request_type": None}, "/subject_request_type"),
        ({"subject_request_id": None}, "/subject_request_id"),
        ({"subject_request_id": ""}, "/subject_request_id"),
        ({"subject_identities": None}, "/subject_identities"),
        ({"subject_identities": {"email": {"encoding": "raw"}}}, "/subject_identities/email/value"),
        ({"subject_identities": {"email": {"encoding": "raw", "value": 7}}}, "/subject_identities/email/value"),
        ({"subject_identities": []}, "/subject_identities"),
    ],
)
def test_what_is_not_a_forwardable_erasure_is_refused_naming_the_field(changes: dict[str, Any], pointer: str) -> None:
    assert pointer_of(request(**changes)) == pointer


def test_malformed_json_is_an_input_error() -> None:
    assert pointer_of(b'{"type": "dsr_processing_request", ') == ""
