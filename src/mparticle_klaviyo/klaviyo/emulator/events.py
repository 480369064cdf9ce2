"""Event operations: /client/events, /api/events and both bulk endpoints (rules 11-19).

A bulk request is all-or-nothing: every entry is checked before anything is recorded, and a
``unique_id`` repeated for one profile and metric within the request fails the whole request.
"""

from __future__ import annotations

from typing import Any

from .context import Ctx, Reply
from .errors import invalid
from .identity import Identity, read_identity
from .rules import check_currency, check_event_time, check_metric_name, check_properties
from .state import EventIn

MAX_BULK_EVENTS = 1000

_Entry = tuple[Identity, dict[str, Any], list[EventIn]]


def read_event(ctx: Ctx, attrs: dict[str, Any], ptr: str, backfill: bool = False) -> EventIn:
    """Check one schema-valid event's attributes (at ``ptr``) against Klaviyo's value rules."""
    metric = attrs["metric"]["data"]["attributes"]
    check_metric_name(metric["name"], f"{ptr}/metric/data/attributes/name")
    currency = attrs.get("value_currency")
    if currency is not None:
        check_currency(currency, f"{ptr}/value_currency")
    text = attrs.get("time")
    # Without a time Klaviyo uses the receive time, truncated to the second.
    epoch = int(ctx.now) if text is None else check_event_time(text, ctx.revision, ctx.now, ptr)
    properties = attrs["properties"]
    check_properties(properties, ctx.revision, f"{ptr}/properties")
    return EventIn(
        metric=metric["name"],
        service=metric.get("service"),
        unique_id=attrs.get("unique_id"),
        epoch=epoch,
        value=attrs.get("value"),
        value_currency=currency,
        properties=properties,
        backfill=bool(attrs.get("backfill", backfill)),
    )


def create_event(ctx: Ctx, body: dict[str, Any]) -> Reply:
    """POST /client/events and /api/events: one event for one profile."""
    attrs = body["data"]["attributes"]
    event = read_event(ctx, attrs, "/data/attributes")
    resource = attrs["profile"]["data"]
    identity = read_identity(resource, "/data/attributes/profile/data")
    ctx.note(identity)
    _commit(ctx, [(identity, resource, [event])])
    return Reply()


def create_client_bulk(ctx: Ctx, body: dict[str, Any]) -> Reply:
    """POST /client/event-bulk-create: many events for one profile."""
    entry = body["data"]
    _check_total(len(entry["attributes"]["events"]["data"]), "/data/attributes/events/data")
    _commit(ctx, [_read_entry(ctx, entry, "/data", set())])
    return Reply()


def create_server_bulk(ctx: Ctx, body: dict[str, Any]) -> Reply:
    """POST /api/event-bulk-create-jobs: many profiles, each with its events."""
    ptr = "/data/attributes/events-bulk-create/data"
    entries = body["data"]["attributes"]["events-bulk-create"]["data"]
    _check_total(sum(len(e["attributes"]["events"]["data"]) for e in entries), ptr)
    seen: set[tuple[str, str, str]] = set()
    read = [_read_entry(ctx, entry, f"{ptr}/{i}", seen) for i, entry in enumerate(entries)]
    _commit(ctx, read)
    return Reply()


def _check_total(count: int, ptr: str) -> None:
    if count > MAX_BULK_EVENTS:
        raise invalid(f"A maximum of {MAX_BULK_EVENTS} events may be sent per request; got {count}.", ptr)


def _read_entry(ctx: Ctx, entry: dict[str, Any], ptr: str, seen: set[tuple[str, str, str]]) -> _Entry:
    attrs = entry["attributes"]
    resource = attrs["profile"]["data"]
    identity = read_identity(resource, f"{ptr}/attributes/profile/data")
    ctx.note(identity)
    who = identity.key()
    events: list[EventIn] = []
    for index, item in enumerate(attrs["events"]["data"]):
        item_ptr = f"{ptr}/attributes/events/data/{index}/attributes"
        event = read_event(ctx, item["attributes"], item_ptr, bool(attrs.get("backfill")))
        if event.unique_id is not None:
            key = (who, event.metric, event.unique_id)
            if key in seen:
                raise invalid(
                    f"'unique_id' '{event.unique_id}' is repeated for the same profile and "
                    "metric; no events were processed.",
                    f"{item_ptr}/unique_id",
                )
            seen.add(key)
        events.append(event)
    return identity, resource, events


def _commit(ctx: Ctx, entries: list[_Entry]) -> None:
    if not ctx.record:
        return
    for identity, resource, events in entries:
        profile = ctx.upsert(identity, resource)
        for event in events:
            ctx.state.record_event(profile, event, ctx.endpoint, ctx.now)
