"""Klaviyo's payload limits are checked before sending: a doomed event is dropped, never requested."""

from __future__ import annotations

from typing import Any

import pytest

from mparticle_klaviyo.klaviyo.limits import (
    MAX_ARRAY_ITEMS,
    MAX_BODY_BYTES,
    MAX_EVENT_PROPERTIES,
    MAX_METRIC_NAME_CHARS,
    MAX_NESTING,
    MAX_STRING_BYTES,
)
from mparticle_klaviyo.mapping.limits import event_limit_problem, profile_limit_problem
from mparticle_klaviyo.mapping.result import MappedBatch, Notice
from mparticle_klaviyo.mapping.settings import MappingSettings
from tests.mapping.builders import batch_doc, custom, map_doc, metrics


def nested(levels: int) -> Any:
    """``levels`` objects nested inside each other."""
    value: Any = "leaf"
    for _ in range(levels):
        value = {"k": value}
    return value


def event_with(properties: dict[str, Any], name: str = "Big") -> MappedBatch:
    return map_doc(batch_doc(custom(name, custom_attributes=properties), custom("Kept")))


def limit_drop(result: MappedBatch) -> str:
    """The detail of the single limit_exceeded drop; the other event must still be sent."""
    assert metrics(result) == ["Kept"]
    [notice] = result.notices
    assert (notice.kind, notice.reason, notice.event) == ("dropped", "limit_exceeded", 0)
    assert notice.detail is not None
    return notice.detail


def test_the_limits_are_klaviyos_documented_ones() -> None:
    assert (MAX_EVENT_PROPERTIES, MAX_STRING_BYTES, MAX_NESTING, MAX_ARRAY_ITEMS) == (400, 102_400, 10, 4000)
    assert (MAX_METRIC_NAME_CHARS, MAX_BODY_BYTES) == (127, 5 * 1024 * 1024)


def test_four_hundred_properties_are_allowed() -> None:
    result = event_with({f"p{n}": n for n in range(400)})
    assert metrics(result) == ["Big", "Kept"]


def test_more_than_four_hundred_properties_drop_the_event() -> None:
    assert limit_drop(event_with({f"p{n}": n for n in range(401)})) == "/properties: 401 properties (at most 400)"


def test_added_properties_count_toward_the_four_hundred() -> None:
    attributes = {f"p{n}": n for n in range(400)}
    doc = batch_doc(
        {"event_type": "screen_view", "data": {"screen_name": "Home", "custom_attributes": attributes}}, custom("Kept")
    )
    assert limit_drop(map_doc(doc)) == "/properties: 401 properties (at most 400)"


def test_a_string_of_exactly_100_kb_is_allowed() -> None:
    assert metrics(event_with({"text": "x" * MAX_STRING_BYTES})) == ["Big", "Kept"]


def test_a_string_over_100_kb_drops_the_event_pointing_at_it() -> None:
    detail = limit_drop(event_with({"a/b": {"text": "x" * (MAX_STRING_BYTES + 1)}}))
    assert detail == "/properties/a~1b/text: string longer than 102400 bytes"


def test_string_size_is_counted_in_utf8_bytes() -> None:
    assert metrics(event_with({"emoji": "😀" * (MAX_STRING_BYTES // 4)})) == ["Big", "Kept"]
    detail = limit_drop(event_with({"emoji": "😀" * (MAX_STRING_BYTES // 4) + "x"}))
    assert detail == "/properties/emoji: string longer than 102400 bytes"


def test_ten_levels_of_nesting_are_allowed() -> None:
    # The properties object is level 1: nine more objects inside it make ten.
    assert metrics(event_with({"deep": nested(MAX_NESTING - 1)})) == ["Big", "Kept"]


def test_deeper_nesting_drops_the_event_pointing_at_the_too_deep_object() -> None:
    detail = limit_drop(event_with({"deep": nested(MAX_NESTING)}))
    assert detail == "/properties/deep/k/k/k/k/k/k/k/k/k: nested deeper than 10 levels"


def test_nesting_counts_arrays_too() -> None:
    value: Any = 1
    for _ in range(MAX_NESTING):
        value = [value]
    assert limit_drop(event_with({"list": value})) == "/properties/list/0/0/0/0/0/0/0/0/0: nested deeper than 10 levels"


def test_an_array_of_4000_items_is_allowed() -> None:
    assert metrics(event_with({"list": list(range(MAX_ARRAY_ITEMS))})) == ["Big", "Kept"]


def test_a_longer_array_drops_the_event_pointing_at_it() -> None:
    detail = limit_drop(event_with({"list": list(range(MAX_ARRAY_ITEMS + 1))}))
    assert detail == "/properties/list: array of 4001 items (at most 4000)"


def test_a_metric_name_of_127_characters_is_allowed() -> None:
    assert metrics(event_with({}, name="n" * 127)) == ["n" * 127, "Kept"]


def test_a_longer_metric_name_drops_the_event() -> None:
    assert limit_drop(event_with({}, name="n" * 128)) == "metric name has 128 characters (at most 127)"


def test_a_renamed_metric_is_checked_after_renaming() -> None:
    settings = MappingSettings(metric_names={"Big": "x" * 200})
    result = map_doc(batch_doc(custom("Big"), custom("Kept")), settings)
    assert limit_drop(result) == "metric name has 200 characters (at most 127)"


def test_an_event_body_over_5_mb_drops_the_event() -> None:
    properties = {f"p{n}": "x" * 90_000 for n in range(60)}
    detail = limit_drop(event_with(properties))
    assert detail.startswith("event body of about ")
    assert detail.endswith(f" bytes (at most {MAX_BODY_BYTES})")


def test_an_event_body_just_under_5_mb_is_allowed() -> None:
    properties = {f"p{n}": "x" * 90_000 for n in range(50)}
    assert metrics(event_with(properties)) == ["Big", "Kept"]


def test_a_profile_property_over_a_limit_drops_every_event_of_the_batch() -> None:
    doc = batch_doc(custom("A"), custom("B"), attributes={"bio": "x" * (MAX_STRING_BYTES + 1)})
    result = map_doc(doc)
    assert result.events == []
    detail = "/profile/properties/bio: string longer than 102400 bytes"
    assert result.notices == [
        Notice(kind="dropped", reason="limit_exceeded", event=0, detail=detail),
        Notice(kind="dropped", reason="limit_exceeded", event=1, detail=detail),
    ]


def test_a_profile_too_big_to_send_drops_every_event_of_the_batch() -> None:
    attributes = {f"a{n}": "x" * 90_000 for n in range(60)}
    result = map_doc(batch_doc(custom("A"), custom("B"), attributes=attributes))
    assert result.events == []
    assert [(n.reason, n.event) for n in result.notices] == [("limit_exceeded", 0), ("limit_exceeded", 1)]


def test_a_profile_and_event_that_together_pass_5_mb_drop_the_event() -> None:
    attributes = {f"a{n}": "x" * 90_000 for n in range(30)}
    properties = {f"p{n}": "x" * 90_000 for n in range(30)}
    result = map_doc(batch_doc(custom("Big", custom_attributes=properties), custom("Kept"), attributes=attributes))
    assert limit_drop(result).startswith("event body of about ")


def test_event_limit_problem_is_none_for_an_ordinary_event() -> None:
    assert event_limit_problem("Viewed", {"a": 1, "b": ["x"], "c": {"d": "e"}}, {"plan": "pro"}, 20) is None


def test_profile_limit_problem_reports_the_size_of_an_ordinary_profile() -> None:
    assert profile_limit_problem({"plan": "pro"}) == (None, len(b'{"plan":"pro"}'))


@pytest.mark.parametrize("key", ["~", "/", "a/b~c"])
def test_pointers_escape_keys_as_json_pointer_tokens(key: str) -> None:
    escaped = key.replace("~", "~0").replace("/", "~1")
    detail = limit_drop(event_with({key: list(range(MAX_ARRAY_ITEMS + 1))}))
    assert detail == f"/properties/{escaped}: array of 4001 items (at most 4000)"
