"""Mapping one batch: the platform gate, the email-or-phone rule, purity, and never raising."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.mapping.batch import map_batch
from mparticle_klaviyo.mapping.result import MappedBatch, Notice
from mparticle_klaviyo.mapping.settings import MappingSettings, parse_platforms
from mparticle_klaviyo.mparticle.decode import decode_document
from mparticle_klaviyo.mparticle.model import Event, UserBatch
from tests.mapping.builders import (
    EMAIL,
    NOW_MS,
    PHONE,
    T0,
    batch_doc,
    custom,
    decode_one,
    drops,
    ev,
    gdpr,
    map_doc,
    metrics,
    warnings,
)

SUPPORTED_EVENT_TYPES = [
    "session_start",
    "session_end",
    "custom_event",
    "screen_view",
    "application_state_transition",
    "commerce",
]


@pytest.mark.parametrize(
    "platform", ["iOS", "Android", "web", "tvOS", "roku", "out_of_band", "alexa", "smart_tv", "fire_tv", "xbox", None]
)
def test_events_from_supported_platforms_are_mapped(platform: str | None) -> None:
    assert metrics(map_doc(batch_doc(custom("A"), platform=platform))) == ["A"]


@pytest.mark.parametrize(("platform", "key"), [("Desktop", "desktop"), ("windows_phone", "windowsphone")])
def test_events_from_other_platforms_are_all_dropped(platform: str, key: str) -> None:
    doc = batch_doc(custom("A"), custom("B"), platform=platform, consent=gdpr(email_marketing=True))
    result = map_doc(doc, MappingSettings(consent_mapping={"email_marketing": "email"}, list_id="L"))
    assert (result.events, result.subscriptions) == ([], [])
    assert result.notices == [
        Notice(kind="dropped", reason="unsupported_platform", event=0, detail=key),
        Notice(kind="dropped", reason="unsupported_platform", event=1, detail=key),
    ]


def test_the_supported_platforms_setting_narrows_the_list() -> None:
    settings = MappingSettings(supported_platforms=parse_platforms(["iOS"]))
    assert metrics(map_doc(batch_doc(custom("A"), platform="iOS"), settings)) == ["A"]
    assert drops(map_doc(batch_doc(custom("A"), platform="Android"), settings)) == [("unsupported_platform", 0)]


def test_the_supported_platforms_setting_can_add_a_platform() -> None:
    settings = MappingSettings(supported_platforms=parse_platforms(["Desktop", "iOS"]))
    assert metrics(map_doc(batch_doc(custom("A"), platform="Desktop"), settings)) == ["A"]


def test_without_email_or_phone_every_event_is_dropped() -> None:
    doc = batch_doc(custom("A"), ev("session_start"), ev("crash_report"), identities={"customer_id": "c", "other": "o"})
    result = map_doc(doc)
    assert result.events == []
    assert drops(result) == [("no_email_or_phone", 0), ("no_email_or_phone", 1), ("no_email_or_phone", 2)]


def test_an_invalid_email_and_an_invalid_phone_count_as_neither() -> None:
    result = map_doc(batch_doc(custom("A"), identities={"email": "not-an-email", "mobile_number": "12"}))
    assert drops(result) == [("no_email_or_phone", 0)]
    assert warnings(result) == ["invalid_email", "invalid_phone"]


def test_a_phone_alone_is_enough() -> None:
    result = map_doc(batch_doc(custom("A"), identities={"mobile_number": PHONE}))
    assert (metrics(result), result.events[0].profile) == (["A"], {"phone_number": PHONE})


def test_an_email_alone_is_enough() -> None:
    result = map_doc(batch_doc(custom("A"), identities={"email": EMAIL}))
    assert (metrics(result), result.events[0].profile) == (["A"], {"email": EMAIL})


def test_every_event_of_a_batch_shares_one_profile() -> None:
    result = map_doc(batch_doc(custom("A"), custom("B"), attributes={"$FirstName": "Jane"}))
    assert result.events[0].profile is result.events[1].profile
    assert result.events[0].profile == {"email": EMAIL, "first_name": "Jane"}


def test_a_batch_without_events_maps_to_nothing_but_its_consent() -> None:
    settings = MappingSettings(consent_mapping={"email_marketing": "email"}, list_id="L")
    result = map_doc(batch_doc(consent=gdpr(email_marketing=True)), settings)
    assert (result.events, result.notices, len(result.subscriptions)) == ([], [], 1)


def test_mapping_is_pure_same_input_same_output() -> None:
    batch = decode_one(batch_doc(custom("A", custom_attributes={"$value": "3"}), ev("screen_view", screen_name="S")))
    before = copy.deepcopy(batch)
    first, second = map_batch(batch, MappingSettings(), NOW_MS), map_batch(batch, MappingSettings(), NOW_MS)
    assert first == second
    assert batch == before


def test_the_clock_is_only_the_now_argument() -> None:
    doc = batch_doc(custom("A", timestamp_unixtime_ms=T0))
    assert metrics(map_doc(doc, now_ms=T0 - 366 * 24 * 3600 * 1000)) == []
    assert metrics(map_doc(doc, now_ms=T0)) == ["A"]


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
reserved_names = st.sampled_from(
    ["$FirstName", "$country", "$Country", "$City", "$zip", "$first_name", "$latitude", "$image", "$event_id", "$value"]
)
attribute_dicts = st.dictionaries(reserved_names | st.text(max_size=12), json_values, max_size=8)
identity_types = st.sampled_from(["email", "mobile_number", "other", "other10", "phone_number_2", "customer_id"])


def accounted(batch: UserBatch, result: MappedBatch) -> bool:
    """Every event was either sent or dropped with a reason."""
    sent = {e.index for e in result.events}
    dropped = {n.event for n in result.notices if n.kind == "dropped"}
    return all(e.index in sent | dropped for e in batch.events)


@given(
    identities=st.dictionaries(identity_types, st.text(max_size=30), max_size=4),
    user_attributes=attribute_dicts,
    event_attributes=attribute_dicts,
    event_type=st.sampled_from([*SUPPORTED_EVENT_TYPES, "crash_report"]),
    name=st.none() | st.text(max_size=140),
    timestamp=st.none() | st.floats(allow_nan=False, allow_infinity=False),
    email_identity=st.sampled_from(["email", "other10"]),
)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_mapping_never_raises_on_arbitrary_attributes_and_identities(
    identities: dict[str, str],
    user_attributes: dict[str, Any],
    event_attributes: dict[str, Any],
    event_type: str,
    name: str | None,
    timestamp: float | None,
    email_identity: str,
) -> None:
    batch = UserBatch(
        source="batch",
        identities=identities,
        user_attributes=user_attributes,
        events=(
            Event(type=event_type, index=0, name=name, attributes=event_attributes, timestamp_ms=timestamp),
            Event(type="custom_event", index=1, name="Second", attributes=event_attributes, timestamp_ms=T0),
        ),
    )
    settings_ = MappingSettings(
        email_identity=email_identity,
        consent_mapping={"email_marketing": "email"},
        default_phone_region="US",
        list_id="L",
    )
    result = map_batch(batch, settings_, NOW_MS)
    assert accounted(batch, result)
    for event in result.events:
        assert "$event_id" not in event.attributes["properties"]
        assert "$value" not in event.attributes["properties"]
        assert isinstance(event.unique_id, str) and event.unique_id
        assert "email" in event.profile or "phone_number" in event.profile


@given(
    identities=st.dictionaries(
        st.sampled_from(["email", "mobile_number", "other_id_3"]), st.text(max_size=20), max_size=3
    ),
    user_attributes=attribute_dicts,
    event_attributes=attribute_dicts,
    mpid=st.integers(min_value=-(2**70), max_value=2**70) | st.text(max_size=20),
)
@settings(max_examples=100)
def test_decoding_and_mapping_arbitrary_json_never_raises_anything_but_input_error(
    identities: dict[str, str], user_attributes: dict[str, Any], event_attributes: dict[str, Any], mpid: int | str
) -> None:
    doc = batch_doc(custom("A", custom_attributes=event_attributes), identities=identities, attributes=user_attributes)
    doc["mpid"] = mpid
    raw = json.dumps(doc).encode("utf-8", "surrogatepass")
    try:
        batches = decode_document(raw)
    except InputError:
        return
    for batch in batches:
        assert accounted(batch, map_batch(batch, MappingSettings(), NOW_MS))
