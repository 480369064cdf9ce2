"""``plan_batch`` (what ingest computes) decides as ``map_batch`` (what delivery sends) does."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mparticle_klaviyo.mapping.batch import map_batch, map_events, plan_batch, prepare_user
from mparticle_klaviyo.mapping.result import LIMIT_EXCEEDED, MappedBatch
from mparticle_klaviyo.mapping.settings import MappingSettings
from mparticle_klaviyo.mparticle.model import SUPPORTED_EVENT_TYPES, Commerce, Consent, Event, Item, UserBatch
from tests.mapping.builders import EMAIL, NOW_MS, T0, batch_doc, custom, decode_one

SETTINGS = MappingSettings(
    consent_mapping={"email_marketing": "email"},
    default_phone_region="US",
    list_id="L",
    metric_names={"Placed Order": "Order Placed", "Screen View": "Viewed Screen"},
)

scalars = st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8)
attribute_names = st.sampled_from(["$value", "$Value", "$event_id", "$Event_Id", "$VALUE", "screen_name", "a", "b"])
attributes = st.dictionaries(attribute_names | st.text(max_size=6), scalars, max_size=5)
items = st.builds(Item, id=st.none() | st.text(max_size=4), price=st.none() | st.floats(0, 100), attributes=attributes)
commerces = st.builds(
    Commerce,
    kind=st.sampled_from(["product", "promotion", "impression"]),
    action=st.sampled_from(["purchase", "Purchase", "add_to_cart", "view", "click", "refund", "unknown", ""]),
    items=st.lists(items, max_size=3).map(tuple),
)
timestamps = st.none() | st.sampled_from([T0, 0.0, -5.0, NOW_MS + 400 * 86_400_000, 631_152_000_000.0])


@st.composite
def events(draw: st.DrawFn, index: int) -> Event:
    kind = draw(st.sampled_from([*SUPPORTED_EVENT_TYPES, "crash_report", "commerce"]))
    return Event(
        type=kind,
        index=index,
        timestamp_ms=draw(timestamps),
        source_message_id=draw(st.none() | st.text(min_size=1, max_size=6)),
        name=draw(st.none() | st.text(max_size=6)),
        attributes=draw(attributes),
        transition=draw(st.none() | st.sampled_from(["install", "background", "crash", "exit"])),
        currency_code=draw(st.none() | st.sampled_from(["usd", "EURO"])),
        commerce=draw(st.none() | commerces) if kind == "commerce" else None,
    )


@st.composite
def batches(draw: st.DrawFn) -> UserBatch:
    count = draw(st.integers(0, 4))
    return UserBatch(
        source="batch",
        identities=draw(
            st.sampled_from([{}, {"email": EMAIL}, {"email": "not-an-email"}, {"mobile_number": "5555550100"}])
        ),
        platform=draw(st.sampled_from(["ios", "android", "desktop", "customfeeds"])),
        consents=tuple(draw(st.lists(st.builds(Consent, purpose=st.just("email_marketing"), consented=st.booleans())))),
        events=tuple(draw(events(i)) for i in range(count)),
        batch_key="k",
    )


def first_sent(mapped: MappedBatch) -> dict[int, tuple[str, str]]:
    """index -> (unique id, metric) of the first Klaviyo event sent for that mParticle event."""
    sent: dict[int, tuple[str, str]] = {}
    for event in mapped.events:
        metric = event.attributes["metric"]["data"]["attributes"]["name"]
        sent.setdefault(event.index, (event.unique_id, metric))
    return sent


def drops(mapped: MappedBatch) -> dict[Any, str]:
    return {n.event: n.reason for n in mapped.notices if n.kind == "dropped" and n.event is not None}


@given(batch=batches())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_the_plan_sends_and_drops_what_the_mapping_does(batch: UserBatch) -> None:
    mapped = map_batch(batch, SETTINGS, NOW_MS)
    plan = plan_batch(batch, SETTINGS, NOW_MS)
    planned = {p.index: (p.unique_id, p.metric) for p in plan.planned}
    sent = first_sent(mapped)
    # Everything the mapping sends is planned, under the same key.
    assert {i: planned.get(i) for i in sent} == sent
    # Everything the plan drops, the mapping drops for the same reason.
    mapped_drops = drops(mapped)
    for index, reason in drops(plan).items():
        assert mapped_drops.get(index) == reason
    # Planned but not sent: only for Klaviyo's size limits, which the plan leaves to delivery.
    assert {mapped_drops.get(i) for i in planned.keys() - sent.keys()} <= {LIMIT_EXCEEDED}
    assert plan.subscriptions == mapped.subscriptions


def test_the_plan_names_the_renamed_metric_and_the_events_own_id() -> None:
    plan = plan_batch(decode_one(batch_doc(custom("Viewed", source_message_id="m-1"))), SETTINGS, NOW_MS)
    assert [(p.index, p.unique_id, p.metric) for p in plan.planned] == [(0, "m-1", "Viewed")]
    assert plan.profile == {"email": EMAIL}


def test_an_event_over_klaviyos_limits_is_planned_and_left_to_delivery_to_drop() -> None:
    huge = custom("Big", source_message_id="m-2", custom_attributes={"text": "x" * 200_000})
    batch = decode_one(batch_doc(huge))
    assert [p.unique_id for p in plan_batch(batch, SETTINGS, NOW_MS).planned] == ["m-2"]
    assert drops(map_batch(batch, SETTINGS, NOW_MS)) == {0: LIMIT_EXCEEDED}


def test_a_batch_without_identity_plans_nothing() -> None:
    plan = plan_batch(decode_one(batch_doc(custom(), identities={})), SETTINGS, NOW_MS)
    assert plan.planned == [] and plan.profile is None
    assert drops(plan) == {0: "no_email_or_phone"}


@given(batch=batches())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_a_prepared_user_maps_each_event_alone_as_the_whole_batch_maps_it(batch: UserBatch) -> None:
    # Delivery maps one job (one event) at a time with the user prepared once.
    whole = map_batch(batch, SETTINGS, NOW_MS)
    user = prepare_user(batch, SETTINGS)
    alone = [map_events(user, [event], NOW_MS) for event in batch.events]
    assert [e for one in alone for e in one.events] == whole.events
    event_notices = [n for one in alone for n in one.notices if n.event is not None]
    assert event_notices == [n for n in whole.notices if n.event is not None]
    assert map_events(user, [], NOW_MS).subscriptions == whole.subscriptions
