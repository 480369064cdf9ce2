"""Rules 11-17: event names, identifiers, value, currency, time window, limits, phone, email."""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import (
    NOW,
    assert_error,
    client,
    config,
    event_body,
    metric,
    one,
    server,
    with_value,
)

PROFILE_DATA = "/data/attributes/profile/data"
ONE_YEAR = 365 * 86400


def _accepted(body: Any, **headers: str) -> dict[str, Any]:
    resp, state = one(client("/client/events", body, **headers))
    assert resp.status == 202, resp.body[:400]
    assert resp.body == b""
    return state


def _rejected(body: Any, pointer: str, **headers: str) -> dict[str, Any]:
    resp, state = one(client("/client/events", body, **headers))
    assert state["events"] == []
    return assert_error(resp, 400, pointer=pointer)


def test_a_valid_event_is_answered_202_with_an_empty_body_and_recorded() -> None:
    state = _accepted(event_body())
    event = state["events"][0]
    assert event["metric"] == "Ordered Product"
    assert event["unique_id"] == "evt-1"
    assert event["value"] == 9.99 and event["value_currency"] == "USD"
    assert event["time"] == "2026-05-01T12:34:56+00:00"
    assert event["profile"] == {"email": "jane@example.com"}
    assert event["properties"] == {"Brand": "Kids Book", "Categories": ["Fiction"]}
    assert event["account"] == "DEMO01"


def test_the_same_body_is_accepted_by_the_server_endpoint() -> None:
    resp, state = one(server("/api/events", event_body()))
    assert resp.status == 202 and resp.body == b""
    assert state["events"][0]["endpoint"] == "POST /api/events"


def test_empty_properties_are_allowed() -> None:
    _accepted(event_body(properties={}))


def test_an_empty_metric_name_is_400() -> None:
    _rejected(event_body(metric=metric("  ")), "/data/attributes/metric/data/attributes/name")


def test_a_metric_name_of_127_characters_is_accepted() -> None:
    _accepted(event_body(metric=metric("n" * 127)))


def test_a_metric_name_of_128_characters_is_400() -> None:
    _rejected(event_body(metric=metric("n" * 128)), "/data/attributes/metric/data/attributes/name")


def test_a_profile_without_any_identifier_is_400() -> None:
    _rejected(event_body(profile={"first_name": "Jane"}), PROFILE_DATA)


@pytest.mark.parametrize(
    "profile", [{"external_id": "x1"}, {"anonymous_id": "a1"}, {"_kx": "k1"}, {"phone_number": "+15005550006"}]
)
def test_any_one_identifier_is_enough_for_an_event(profile: dict[str, str]) -> None:
    _accepted(event_body(profile=profile))


def test_a_profile_id_alone_is_an_identifier() -> None:
    body = with_value(event_body(profile={}), "data/attributes/profile/data/id", "01ABC")
    _accepted(body)


def test_empty_identifier_strings_do_not_count() -> None:
    _rejected(event_body(profile={"external_id": "", "anonymous_id": ""}), PROFILE_DATA)


@pytest.mark.parametrize("currency", ["usd", "US", "USDX", "$"])
def test_a_currency_that_is_not_three_upper_case_letters_is_400(currency: str) -> None:
    _rejected(event_body(value_currency=currency), "/data/attributes/value_currency")


def test_an_integer_value_is_a_number() -> None:
    _accepted(event_body(value=20))


def test_a_time_before_1990_is_400() -> None:
    _rejected(event_body(time="1989-12-31T23:59:59+00:00"), "/data/attributes/time")


def test_a_time_in_the_1990s_is_accepted_at_current_revisions() -> None:
    _accepted(event_body(time="1995-06-01T00:00:00Z"))


def test_a_time_before_2000_is_400_at_revisions_up_to_2026_01_15() -> None:
    body = event_body(time="1995-06-01T00:00:00Z")
    cfg = config(revisions=frozenset({"2026-01-15"}))
    resp, _ = one(client("/client/events", body, revision="2026-01-15"), cfg)
    assert_error(resp, 400, pointer="/data/attributes/time")


def test_a_time_more_than_a_year_ahead_is_400() -> None:
    _rejected(event_body(time="2027-11-02T00:00:01+00:00"), "/data/attributes/time")


def test_a_time_just_under_a_year_ahead_is_accepted() -> None:
    _accepted(event_body(time="2027-10-31T00:00:00+00:00"))


def test_the_time_is_stored_truncated_to_the_second_in_utc() -> None:
    state = _accepted(event_body(time="2026-05-01T14:34:56.987+02:00"))
    assert state["events"][0]["time"] == "2026-05-01T12:34:56+00:00"


@pytest.mark.parametrize(
    "time",
    ["2026-11-30T12:00:00", "2026-11-30T12:00:00.250", "2026-11-30 12:00:00", "2026-11-30 12:00:00Z"],
)
def test_a_time_without_an_offset_or_with_a_space_is_utc_as_in_klaviyos_datetime_guide(time: str) -> None:
    # Klaviyo's Python SDK sends a naive datetime as 2026-11-30T12:00:00; Klaviyo accepts it.
    state = _accepted(event_body(time=time))
    assert state["events"][0]["time"] == "2026-11-30T12:00:00+00:00"


def test_a_naive_time_is_held_to_the_time_window_as_utc() -> None:
    _rejected(event_body(time="1989-12-31T23:59:59"), "/data/attributes/time")
    _rejected(event_body(time="2027-11-02T00:00:00"), "/data/attributes/time")


def test_an_event_without_time_gets_the_receive_time() -> None:
    body = event_body()
    del body["data"]["attributes"]["time"]
    state = _accepted(body)
    assert state["events"][0]["time"] == "2026-11-01T00:00:00+00:00"
    assert NOW == 1_793_491_200.0


def test_400_top_level_properties_are_accepted() -> None:
    _accepted(event_body(properties={f"p{i}": i for i in range(400)}))


def test_401_top_level_properties_are_400() -> None:
    _rejected(event_body(properties={f"p{i}": i for i in range(401)}), "/data/attributes/properties")


def test_301_top_level_properties_are_400_at_revisions_up_to_2024_10_15() -> None:
    cfg = config(revisions=frozenset({"2024-10-15"}))
    body = event_body(properties={f"p{i}": i for i in range(301)})
    resp, _ = one(client("/client/events", body, revision="2024-10-15"), cfg)
    assert_error(resp, 400, pointer="/data/attributes/properties")


def test_a_string_over_100_kb_in_properties_is_400() -> None:
    _rejected(event_body(properties={"big": "é" * 52_000}), "/data/attributes/properties/big")


def test_a_string_of_100_kb_is_accepted() -> None:
    _accepted(event_body(properties={"big": "x" * 100 * 1024}))


def test_an_array_over_4000_items_is_400() -> None:
    _rejected(event_body(properties={"list": {"inner": list(range(4001))}}), "/data/attributes/properties/list/inner")


def test_an_array_of_4000_items_is_accepted() -> None:
    _accepted(event_body(properties={"list": list(range(4000))}))


def _nested(depth: int) -> dict[str, Any]:
    # depth 1 is the properties object itself
    node: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        node = {"n": node}
    return node


def test_properties_nested_10_levels_are_accepted() -> None:
    _accepted(event_body(properties=_nested(10)))


def test_properties_nested_11_levels_are_400() -> None:
    resp, _ = one(client("/client/events", event_body(properties=_nested(11))))
    error = assert_error(resp, 400)
    assert error["source"]["pointer"].startswith("/data/attributes/properties/n/n")


def test_an_invalid_phone_beside_an_email_is_accepted_with_a_partial_failure_header() -> None:
    resp, state = one(
        client("/client/events", event_body(profile={"email": "jane@example.com", "phone_number": "555-1234"}))
    )
    assert resp.status == 202
    assert resp.headers["X-Klaviyo-Partial-Failure"] == "phone_number"
    assert state["events"][0]["profile"] == {"email": "jane@example.com"}
    assert state["partial_failures"] == 1


def test_a_valid_request_has_no_partial_failure_header() -> None:
    resp, _ = one(client("/client/events", event_body()))
    assert "X-Klaviyo-Partial-Failure" not in resp.headers


@pytest.mark.parametrize("phone", ["5005550006", "+05005550006", "+1 500 555 0006", "+1234567890123456", "+1"])
def test_an_invalid_phone_as_the_only_identifier_is_400(phone: str) -> None:
    _rejected(event_body(profile={"phone_number": phone}), f"{PROFILE_DATA}/attributes/phone_number")


# E.164 in shape but no number that can exist: no such area code, exchange or length.
FAKE_PHONES = ["+10000000000", "+11234567890", "+15555550100", "+4400000000", "+999123456789"]


@pytest.mark.parametrize("phone", FAKE_PHONES)
def test_a_phone_of_e164_shape_that_is_not_a_real_number_is_400(phone: str) -> None:
    error = _rejected(event_body(profile={"phone_number": phone}), f"{PROFILE_DATA}/attributes/phone_number")
    assert phone in error["detail"]


@pytest.mark.parametrize("phone", FAKE_PHONES)
def test_a_fake_phone_beside_an_email_is_dropped_with_a_partial_failure(phone: str) -> None:
    resp, state = one(
        client("/client/events", event_body(profile={"email": "jane@example.com", "phone_number": phone}))
    )
    assert resp.status == 202
    assert resp.headers["X-Klaviyo-Partial-Failure"] == "phone_number"
    assert state["events"][0]["profile"] == {"email": "jane@example.com"}


@pytest.mark.parametrize("phone", ["+15005550006", "+14155552671", "+442079460000", "+33612345678", "+918448309222"])
def test_real_numbers_in_e164_are_accepted(phone: str) -> None:
    state = _accepted(event_body(profile={"phone_number": phone}))
    assert state["events"][0]["profile"] == {"phone_number": phone}


@pytest.mark.parametrize("email", ["jane", "jane@", "@example.com", "jane@example", "ja ne@example.com", ""])
def test_an_invalid_email_is_400(email: str) -> None:
    _rejected(event_body(profile={"email": email, "external_id": "x"}), f"{PROFILE_DATA}/attributes/email")
