"""mParticle events -> Klaviyo event attributes: metric, properties, time, value, unique_id."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from mparticle_klaviyo.mapping.batch import map_batch
from mparticle_klaviyo.mapping.result import Notice
from mparticle_klaviyo.mapping.settings import MappingSettings
from tests.mapping.builders import (
    NOW_MS,
    T0,
    T0_ISO,
    batch_doc,
    commerce,
    custom,
    decode_one,
    drops,
    ev,
    map_doc,
    metric,
    metrics,
    only,
    product,
)

YEAR_MS = 365 * 24 * 3600 * 1000
MS_1990 = 631_152_000_000  # 1990-01-01T00:00:00Z


def attributes_of(*events: dict[str, Any], settings: MappingSettings | None = None) -> dict[str, Any]:
    result = map_doc(batch_doc(*events, source_request_id="req-1"), settings)
    attributes = only(result).attributes
    assert isinstance(attributes, dict)
    return attributes


def test_a_custom_event_is_its_event_name_with_its_attributes_as_properties() -> None:
    attributes = attributes_of(
        custom("Signed Up", custom_attributes={"plan": "pro", "seats": 3}, source_message_id="m1")
    )
    assert attributes == {
        "properties": {"plan": "pro", "seats": 3},
        "metric": {"data": {"type": "metric", "attributes": {"name": "Signed Up"}}},
        "unique_id": "m1",
        "time": T0_ISO,
    }


def test_a_screen_view_is_screen_view_with_the_screen_name_property() -> None:
    attributes = attributes_of(ev("screen_view", screen_name="Home", custom_attributes={"section": "top"}))
    assert metric_name(attributes) == "Screen View"
    assert attributes["properties"] == {"section": "top", "screen_name": "Home"}


def test_a_screen_view_without_a_screen_name_has_no_screen_name_property() -> None:
    attributes = attributes_of(ev("screen_view"))
    assert (metric_name(attributes), attributes["properties"]) == ("Screen View", {})


def test_a_session_start_is_session_start() -> None:
    attributes = attributes_of(ev("session_start"))
    assert (metric_name(attributes), attributes["properties"]) == ("Session Start", {})


def test_a_session_end_is_session_end_with_its_duration() -> None:
    attributes = attributes_of(ev("session_end", session_duration_ms=6000))
    assert (metric_name(attributes), attributes["properties"]) == ("Session End", {"session_duration_ms": 6000})


def test_a_session_end_without_a_duration_has_no_duration_property() -> None:
    assert attributes_of(ev("session_end"))["properties"] == {}


@pytest.mark.parametrize(
    ("data", "name"),
    [
        ({"application_transition_type": "application_initialized", "is_first_run": True}, "Application Installed"),
        ({"application_transition_type": "application_initialized", "is_upgrade": True}, "Application Upgraded"),
        ({"application_transition_type": "application_initialized"}, "Application Initialized"),
        ({"application_transition_type": "application_foreground"}, "Application Foreground"),
        ({"application_transition_type": "application_background"}, "Application Background"),
        ({"application_transition_type": "application_exit"}, "Application Exit"),
    ],
)
def test_app_state_transitions_have_their_own_metrics(data: dict[str, Any], name: str) -> None:
    assert metric_name(attributes_of(ev("application_state_transition", **data))) == name


def test_an_unknown_app_state_transition_is_dropped() -> None:
    result = map_doc(batch_doc(ev("application_state_transition", application_transition_type="application_crashed")))
    assert result.notices == [
        Notice(kind="dropped", reason="unsupported_transition", event=0, detail="application_crashed")
    ]


@pytest.mark.parametrize(
    "event_type",
    [
        "crash_report",
        "breadcrumb",
        "opt_out",
        "first_run",
        "push_registration",
        "push_message",
        "network_performance",
        "profile",
        "user_attribute_change",
        "user_identity_change",
        "uninstall",
        "unknown",
        "media",
    ],
)
def test_other_event_types_are_dropped_as_unsupported(event_type: str) -> None:
    result = map_doc(batch_doc(ev(event_type, event_name="x")))
    assert (result.events, result.notices) == (
        [],
        [Notice(kind="dropped", reason="unsupported_event_type", event=0, detail=event_type)],
    )


def test_a_custom_event_without_a_name_is_dropped() -> None:
    result = map_doc(batch_doc(ev("custom_event", custom_event_type="other")))
    assert drops(result) == [("missing_event_name", 0)]


def test_only_the_bad_events_of_a_batch_are_dropped() -> None:
    result = map_doc(batch_doc(custom("A"), ev("crash_report"), ev("custom_event"), custom("B")))
    assert (metrics(result), drops(result)) == (["A", "B"], [("unsupported_event_type", 1), ("missing_event_name", 2)])
    assert [e.index for e in result.events] == [0, 3]


def test_event_id_attribute_is_the_unique_id_and_leaves_the_properties() -> None:
    attributes = attributes_of(custom(custom_attributes={"$event_id": "evt-1", "k": "v"}, source_message_id="m1"))
    assert (attributes["unique_id"], attributes["properties"]) == ("evt-1", {"k": "v"})


def test_a_numeric_event_id_becomes_text() -> None:
    assert attributes_of(custom(custom_attributes={"$event_id": 12345}))["unique_id"] == "12345"


def test_the_source_message_id_is_the_unique_id_without_an_event_id() -> None:
    assert attributes_of(custom(source_message_id="m-1"))["unique_id"] == "m-1"


@pytest.mark.parametrize("event_id", ["", None, True])
def test_an_empty_or_non_id_event_id_falls_back_to_the_source_message_id(event_id: Any) -> None:
    attributes = attributes_of(custom(custom_attributes={"$event_id": event_id}, source_message_id="m-1"))
    assert (attributes["unique_id"], attributes["properties"]) == ("m-1", {})


def test_the_firehose_event_id_is_the_unique_id_without_event_id_or_source_message_id() -> None:
    doc = {
        "type": "event_processing_request",
        "id": "req-1",
        "user_identities": [{"type": "email", "encoding": "raw", "value": "jane@example.com"}],
        "events": [{"type": "custom_event", "id": "fh-event-1", "source_id": "src", "name": "X", "timestamp_ms": T0}],
    }
    result = map_batch(decode_one(doc), MappingSettings(), NOW_MS)
    assert only(result).unique_id == "fh-event-1"


def test_without_any_id_the_unique_id_is_a_hash_of_the_batch_and_the_event_position() -> None:
    result = map_doc(batch_doc(custom("A"), custom("A"), source_request_id="req-1"))
    expected = [hashlib.sha256(f"req-1#{n}".encode()).hexdigest()[:32] for n in (0, 1)]
    assert [e.unique_id for e in result.events] == expected


def test_a_hashed_unique_id_is_the_same_in_every_run() -> None:
    # Pinned: a replay after an upgrade must produce the same ids, or Klaviyo records events twice.
    doc = batch_doc(custom("A", custom_attributes={"k": "v"}))
    assert [e.unique_id for e in map_doc(doc).events] == ["e698babe88c75cf893285cfef8003af6"]


def test_the_same_batch_gets_the_same_hashed_ids_when_mapped_again() -> None:
    doc = batch_doc(custom("A"), custom("B"), attributes={"plan": "pro"})
    assert [e.unique_id for e in map_doc(doc).events] == [e.unique_id for e in map_doc(doc).events]


def test_a_different_batch_gets_different_hashed_ids() -> None:
    first = map_doc(batch_doc(custom("A", custom_attributes={"n": 1}))).events[0].unique_id
    second = map_doc(batch_doc(custom("A", custom_attributes={"n": 2}))).events[0].unique_id
    assert first != second


def test_a_different_source_request_gets_different_hashed_ids() -> None:
    first = map_doc(batch_doc(custom("A"), source_request_id="r1")).events[0].unique_id
    second = map_doc(batch_doc(custom("A"), source_request_id="r2")).events[0].unique_id
    assert first != second


@pytest.mark.parametrize(
    ("value", "expected"),
    [(9.99, 9.99), (10, 10), ("9.99", 9.99), ("10", 10), (" 4.50 ", 4.5), (-3, -3), (0, 0)],
)
def test_value_attribute_is_the_numeric_value_and_leaves_the_properties(value: Any, expected: float) -> None:
    attributes = attributes_of(custom(custom_attributes={"$value": value, "k": "v"}))
    assert (attributes["value"], attributes["properties"]) == (expected, {"k": "v"})
    assert type(attributes["value"]) is type(expected)


@pytest.mark.parametrize("value", ["ten", "", "1,5", "NaN", "Infinity", "1e400", True, [1], {"amount": 1}])
def test_a_value_that_is_not_a_number_drops_the_event(value: Any) -> None:
    result = map_doc(batch_doc(custom(custom_attributes={"$value": value}), custom("Kept")))
    assert metrics(result) == ["Kept"]
    assert result.notices == [Notice(kind="dropped", reason="invalid_value", event=0, detail="/$value is not a number")]


def test_a_null_value_attribute_means_no_value() -> None:
    attributes = attributes_of(custom(custom_attributes={"$value": None}))
    assert ("value" in attributes, attributes["properties"]) == (False, {})


def test_an_event_without_a_value_has_no_value_field() -> None:
    attributes = attributes_of(custom(currency_code="USD"))
    assert ("value" in attributes, "value_currency" in attributes) == (False, False)


def test_the_currency_code_is_the_value_currency() -> None:
    attributes = attributes_of(custom(currency_code="EUR", custom_attributes={"$value": 5}))
    assert (attributes["value"], attributes["value_currency"]) == (5, "EUR")


def test_a_lower_case_currency_code_is_upper_cased() -> None:
    assert attributes_of(custom(currency_code="usd", custom_attributes={"$value": 5}))["value_currency"] == "USD"


@pytest.mark.parametrize("code", ["US Dollar", "€", "US", "usdx", ""])
def test_a_currency_that_is_not_an_iso_code_is_left_out_with_a_warning(code: str) -> None:
    result = map_doc(batch_doc(custom(currency_code=code, custom_attributes={"$value": 5})))
    attributes = only(result).attributes
    assert (attributes["value"], "value_currency" in attributes) == (5, False)
    assert result.notices == [
        Notice(
            kind="warning", reason="invalid_currency", event=0, detail=f"currency_code {code!r} is not an ISO 4217 code"
        )
    ]


@pytest.mark.parametrize(
    ("ms", "iso"),
    [
        (T0, "2023-11-14T22:13:20.000+00:00"),
        (T0 + 123, "2023-11-14T22:13:20.123+00:00"),
        (1_700_000_000_999.9, "2023-11-14T22:13:20.999+00:00"),
        (MS_1990, "1990-01-01T00:00:00.000+00:00"),
        (951_782_400_000, "2000-02-29T00:00:00.000+00:00"),
    ],
)
def test_the_timestamp_is_the_time_in_iso_8601_utc(ms: float, iso: str) -> None:
    assert attributes_of(custom(timestamp_unixtime_ms=ms))["time"] == iso


def test_an_event_without_a_timestamp_has_no_time() -> None:
    doc = batch_doc({"event_type": "session_start", "data": {}})
    assert "time" not in only(map_doc(doc)).attributes


@pytest.mark.parametrize("ms", [MS_1990 - 1, 0, -1, -1e300, NOW_MS + YEAR_MS + 1, 1e300])
def test_a_time_before_1990_or_over_a_year_ahead_is_dropped_as_a_limit(ms: float) -> None:
    result = map_doc(batch_doc(custom(timestamp_unixtime_ms=ms), custom("Kept")))
    assert metrics(result) == ["Kept"]
    [notice] = result.notices
    assert (notice.kind, notice.reason, notice.event) == ("dropped", "limit_exceeded", 0)
    assert notice.detail is not None
    assert notice.detail.startswith("/time: ")


def test_a_time_exactly_one_year_ahead_is_accepted() -> None:
    assert metric_name(attributes_of(custom("Future", timestamp_unixtime_ms=NOW_MS + YEAR_MS))) == "Future"


def test_metric_names_setting_renames_default_metrics() -> None:
    settings = MappingSettings(metric_names={"Screen View": "Viewed Screen", "Session Start": "App Opened"})
    result = map_doc(batch_doc(ev("screen_view", screen_name="Home"), ev("session_start"), ev("session_end")), settings)
    assert metrics(result) == ["Viewed Screen", "App Opened", "Session End"]


def test_metric_names_setting_renames_custom_events_too() -> None:
    settings = MappingSettings(metric_names={"Signed Up": "Account Created"})
    assert metric_name(attributes_of(custom("Signed Up"), settings=settings)) == "Account Created"


def test_mapping_does_not_change_the_input_attributes() -> None:
    batch = decode_one(
        batch_doc(ev("screen_view", screen_name="Home", custom_attributes={"$value": 1, "$event_id": "e"}))
    )
    map_batch(batch, MappingSettings(), NOW_MS)
    assert batch.events[0].attributes == {"$value": 1, "$event_id": "e"}


def test_emoji_and_rtl_event_names_and_properties_pass_through() -> None:
    attributes = attributes_of(custom("🛒 קנייה", custom_attributes={"تعليق": "ممتاز 👍", "nul": "a\u0000b"}))
    assert (metric_name(attributes), attributes["properties"]) == ("🛒 קנייה", {"تعليق": "ممتاز 👍", "nul": "a\u0000b"})


def metric_name(attributes: dict[str, Any]) -> str:
    name = attributes["metric"]["data"]["attributes"]["name"]
    assert isinstance(name, str)
    return name


def test_metric_helper_reads_the_same_name() -> None:
    result = map_doc(batch_doc(custom("A")))
    assert metric(result.events[0]) == metric_name(result.events[0].attributes) == "A"


def test_a_screen_name_attribute_is_shadowed_by_the_screen_name_with_a_warning() -> None:
    result = map_doc(batch_doc(ev("screen_view", screen_name="Home", custom_attributes={"screen_name": "Mine"})))
    assert only(result).attributes["properties"] == {"screen_name": "Home"}
    assert result.notices == [
        Notice(
            kind="warning",
            reason="attribute_shadowed",
            event=0,
            detail="event attribute 'screen_name' is shadowed by the screen view field of that name",
        )
    ]


def test_a_session_duration_attribute_is_shadowed_by_the_session_duration_with_a_warning() -> None:
    result = map_doc(batch_doc(ev("session_end", session_duration_ms=5, custom_attributes={"session_duration_ms": 1})))
    assert only(result).attributes["properties"] == {"session_duration_ms": 5}
    assert [n.reason for n in result.notices] == ["attribute_shadowed"]


@pytest.mark.parametrize("key", ["$Value", "$VALUE", "$vAlUe"])
def test_value_is_matched_in_any_case(key: str) -> None:
    attributes = attributes_of(custom(custom_attributes={key: "2.5", "k": "v"}))
    assert (attributes["value"], attributes["properties"]) == (2.5, {"k": "v"})


@pytest.mark.parametrize("key", ["$Event_Id", "$EVENT_ID", "$Event_ID"])
def test_event_id_is_matched_in_any_case(key: str) -> None:
    attributes = attributes_of(custom(custom_attributes={key: "evt-9", "k": "v"}, source_message_id="m1"))
    assert (attributes["unique_id"], attributes["properties"]) == ("evt-9", {"k": "v"})


RESERVED_EVENT_SPELLINGS = [
    ("$value", "$Value", "value"),
    ("$value", "$VALUE", "value"),
    ("$VALUE", "$Value", "value"),
    ("$event_id", "$Event_Id", "unique_id"),
    ("$event_id", "$EVENT_ID", "unique_id"),
    ("$EVENT_ID", "$Event_Id", "unique_id"),
]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize(("winner", "loser", "field"), RESERVED_EVENT_SPELLINGS)
def test_the_exact_spelling_of_a_reserved_event_key_wins_whatever_the_order(
    winner: str, loser: str, field: str, reverse: bool
) -> None:
    items = [(winner, "7"), (loser, "8")]
    result = map_doc(batch_doc(custom(custom_attributes=dict(reversed(items) if reverse else items))))
    attributes = only(result).attributes
    assert (attributes[field], attributes["properties"]) == (7 if field == "value" else "7", {})
    assert result.notices == [
        Notice(
            kind="warning",
            reason="attribute_shadowed",
            event=0,
            detail=f"event attribute {loser!r} is shadowed by {winner!r}",
        )
    ]


def test_a_value_in_another_case_that_is_not_a_number_drops_the_event() -> None:
    result = map_doc(batch_doc(custom(custom_attributes={"$Value": "ten"})))
    assert result.notices == [Notice(kind="dropped", reason="invalid_value", event=0, detail="/$Value is not a number")]


def test_a_commerce_value_in_another_case_is_the_order_value() -> None:
    action = {"action": "purchase", "total_amount": 5.0, "products": [product("S1", 5.0)]}
    result = map_doc(batch_doc(commerce(product_action=action, custom_attributes={"$VALUE": 9, "$Event_Id": "o-1"})))
    assert [(e.unique_id, e.attributes["value"]) for e in result.events] == [("o-1", 9), ("o-1:0", 5.0)]
    assert "$VALUE" not in result.events[0].attributes["properties"]


@pytest.mark.parametrize(
    ("key", "reserved"),
    [
        ("$eventid", "$event_id"),
        ("$event-id", "$event_id"),
        ("$event id", "$event_id"),
        ("$Event.Id", "$event_id"),
        ("$$event_id", "$event_id"),
        ("event_id", "$event_id"),
        ("eventId", "$event_id"),
        ("EVENT-ID", "$event_id"),
        ("$_value", "$value"),
        ("$$value", "$value"),
        ("$val_ue", "$value"),
        ("$Value ", "$value"),
    ],
)
def test_a_near_spelling_of_a_reserved_key_passes_through_with_a_warning(key: str, reserved: str) -> None:
    result = map_doc(batch_doc(custom(custom_attributes={key: "1"}, source_message_id="m1")))
    attributes = only(result).attributes
    assert (attributes["properties"], attributes["unique_id"], "value" in attributes) == ({key: "1"}, "m1", False)
    assert result.notices == [
        Notice(
            kind="warning",
            reason="near_reserved_key",
            event=0,
            detail=f"event attribute {key!r} looks like {reserved!r} but is not it; sent as a property",
        )
    ]


@pytest.mark.parametrize("key", ["value", "Value", "id", "event", "eventname", "$event", "$values", "event_ids"])
def test_ordinary_names_close_to_reserved_keys_raise_no_warning(key: str) -> None:
    result = map_doc(batch_doc(custom(custom_attributes={key: "1"})))
    assert (only(result).attributes["properties"], result.notices) == ({key: "1"}, [])
