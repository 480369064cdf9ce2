"""Reserved event keys: any case matches, the result never depends on key order, memory stays bounded."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mparticle_klaviyo.mapping import event_keys
from tests.mapping.builders import batch_doc, custom, map_doc

SPELLINGS = ["$value", "$Value", "$VALUE", "$event_id", "$Event_Id", "$EVENT_ID"]
NEAR = ["$eventid", "event_id", "$$value", "$val_ue"]
ORDINARY = ["value", "plan", "id"]


def mapped(attributes: dict[str, Any]) -> tuple[Any, ...]:
    """What an event with these attributes becomes: value, unique id, properties, notices (as a set)."""
    result = map_doc(batch_doc(custom(custom_attributes=attributes, source_message_id="m1")))
    [event] = result.events
    notices = sorted((n.kind, n.reason, n.detail or "") for n in result.notices)
    return event.attributes.get("value"), event.unique_id, event.attributes["properties"], notices


@given(st.lists(st.sampled_from(SPELLINGS + NEAR + ORDINARY), unique=True, min_size=1), st.randoms())
def test_the_mapping_of_reserved_keys_does_not_depend_on_key_order(keys: list[str], random: Any) -> None:
    attributes = {key: str(n) for n, key in enumerate(keys)}
    shuffled = list(attributes.items())
    random.shuffle(shuffled)
    assert mapped(attributes) == mapped(dict(shuffled))


def test_the_known_keys_stay_bounded_under_a_flood_of_distinct_keys() -> None:
    for start in range(0, 3 * event_keys._MAX_KEYS, 100):
        map_doc(batch_doc(custom(custom_attributes={f"k{n}": 1 for n in range(start, start + 100)})))
    assert len(event_keys.ORDINARY_KEYS) + len(event_keys._KINDS) <= event_keys._MAX_KEYS
    assert mapped({"$Value": "2", "$eventid": "x"})[0] == 2
