"""mParticle events -> Klaviyo event attributes (metric, properties, time, value, unique_id)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from typing import Any

from mparticle_klaviyo.klaviyo.limits import EARLIEST_EVENT_YEAR
from mparticle_klaviyo.mapping.commerce import commerce_metric, commerce_metrics
from mparticle_klaviyo.mapping.event_keys import EVENT_ID, ORDINARY_KEYS, VALUE, other_spellings
from mparticle_klaviyo.mapping.limits import event_limit_problem
from mparticle_klaviyo.mapping.result import (
    ATTRIBUTE_SHADOWED,
    INVALID_CURRENCY,
    INVALID_VALUE,
    LIMIT_EXCEEDED,
    MISSING_EVENT_NAME,
    UNSUPPORTED_COMMERCE_ACTION,
    UNSUPPORTED_EVENT_TYPE,
    UNSUPPORTED_TRANSITION,
    MappedBatch,
    MappedEvent,
    PlannedEvent,
)
from mparticle_klaviyo.mapping.settings import MappingSettings
from mparticle_klaviyo.mparticle.model import SUPPORTED_EVENT_TYPES, Event
from mparticle_klaviyo.mparticle.names import as_number

TRANSITION_METRICS = {
    "install": "Application Installed",
    "upgrade": "Application Upgraded",
    "initialize": "Application Initialized",
    "foreground": "Application Foreground",
    "background": "Application Background",
    "exit": "Application Exit",
}
SCREEN_VIEW_METRIC = "Screen View"
SESSION_START_METRIC = "Session Start"
SESSION_END_METRIC = "Session End"

_EARLIEST_MS = datetime(EARLIEST_EVENT_YEAR, 1, 1, tzinfo=UTC).timestamp() * 1000
_YEAR_MS = 365 * 24 * 3600 * 1000
_CURRENCY = re.compile(r"^[A-Za-z]{3}$")
_MINUTE_PREFIXES: dict[int, str] = {}
_METRICS: dict[str, dict[str, Any]] = {}
_MAX_METRICS = 4096


class EventContext:
    """Per-batch inputs of event mapping: settings, profile, the clock and the batch's identity."""

    __slots__ = ("batch_key", "now_ms", "out", "profile", "profile_bytes", "settings")

    def __init__(
        self,
        settings: MappingSettings,
        profile: dict[str, Any],
        profile_bytes: int,
        now_ms: float,
        batch_key: str,
        out: MappedBatch,
    ) -> None:
        self.settings = settings
        self.profile = profile
        self.profile_bytes = profile_bytes
        self.now_ms = now_ms
        self.batch_key = batch_key
        self.out = out


def map_event(event: Event, ctx: EventContext) -> None:
    """Append the Klaviyo events for one mParticle event to ``ctx.out``, or a drop notice."""
    checked = _checked_fields(event, ctx)
    if checked is None:
        return
    properties, event_id, value = checked
    time = _iso_time(event.timestamp_ms)
    unique_id = _unique_id(event, event_id, ctx.batch_key)
    if event.type == "commerce":
        _map_commerce(event, properties, value, time, unique_id, ctx)
        return
    metric = _simple_metric(event, properties, ctx)
    if metric is not None:
        _emit(event, metric, properties, value, time, unique_id, ctx)


def plan_event(event: Event, ctx: EventContext) -> PlannedEvent | None:
    """What ``map_event`` decides without building the event: its first metric and unique id, or a drop.

    Every drop but one is decided as ``map_event`` decides it (the same checks, in the same
    order); Klaviyo's size limits are left to the full mapping at send time, which needs the
    built properties to check them.
    """
    checked = _checked_fields(event, ctx)
    if checked is None:
        return None
    properties, event_id, _ = checked
    unique_id = _unique_id(event, event_id, ctx.batch_key)
    if event.type == "commerce":
        metric = commerce_metric(event.commerce) if event.commerce else None
        if metric is None:
            _unsupported_commerce(event, ctx)
    else:
        metric = _simple_metric(event, properties, ctx)
    if metric is None:
        return None
    return PlannedEvent(index=event.index, unique_id=unique_id, metric=ctx.settings.metric_names.get(metric, metric))


def _checked_fields(event: Event, ctx: EventContext) -> tuple[dict[str, Any], Any, float | None] | None:
    """The event's properties without reserved keys, its ``$event_id`` and ``$value``; None if dropped."""
    if event.type not in SUPPORTED_EVENT_TYPES:
        ctx.out.drop(UNSUPPORTED_EVENT_TYPE, event.index, detail=event.type)
        return None
    properties = dict(event.attributes)  # a copy: reserved keys leave it, screen views add to it
    event_id = properties.pop(EVENT_ID, None)
    raw_value = properties.pop(VALUE, None)
    value_key = VALUE
    if properties and not ORDINARY_KEYS.issuperset(properties):  # one C-level check; rarely true
        event_id, raw_value, value_key = other_spellings(
            event.attributes, properties, event_id, raw_value, event.index, ctx.out
        )
    value = None if raw_value is None else as_number(raw_value)
    if raw_value is not None and value is None:
        ctx.out.drop(INVALID_VALUE, event.index, detail=f"/{value_key} is not a number")
        return None
    if not _time_in_range(event, ctx):
        return None
    return properties, event_id, value


def _unsupported_commerce(event: Event, ctx: EventContext) -> None:
    action = event.commerce.action if event.commerce else "none"
    ctx.out.drop(UNSUPPORTED_COMMERCE_ACTION, event.index, detail=action)


def _map_commerce(
    event: Event, properties: dict[str, Any], value: float | None, time: str | None, unique_id: str, ctx: EventContext
) -> None:
    """Emit the Klaviyo events of one commerce event, or drop it when its action is not supported."""
    shadowed: list[str] = []
    found = commerce_metrics(event.commerce, properties, shadowed) if event.commerce else None
    if found is None:
        _unsupported_commerce(event, ctx)
        return
    if shadowed:
        for detail in dict.fromkeys(shadowed):  # once per event, not once per Ordered Product
            ctx.out.warn(ATTRIBUTE_SHADOWED, event.index, detail=detail)
    for m in found:
        # An explicit $value wins over the order total, not over each Ordered Product's own total.
        amount = value if value is not None and not m.suffix else m.value
        _emit(event, m.metric, m.properties, amount, time, f"{unique_id}{m.suffix}", ctx)


def _simple_metric(event: Event, properties: dict[str, Any], ctx: EventContext) -> str | None:
    """Metric name of a non-commerce event; adds the type's own properties."""
    if event.type == "custom_event":
        if not event.name:
            ctx.out.drop(MISSING_EVENT_NAME, event.index, detail="custom event without event_name")
        return event.name or None
    if event.type == "screen_view":
        if event.name:
            if "screen_name" in properties:
                _shadowed_by_field("screen_name", "screen view", event.index, ctx)
            properties["screen_name"] = event.name
        return SCREEN_VIEW_METRIC
    if event.type == "session_start":
        return SESSION_START_METRIC
    if event.type == "session_end":
        if event.session_duration_ms is not None:
            if "session_duration_ms" in properties:
                _shadowed_by_field("session_duration_ms", "session end", event.index, ctx)
            properties["session_duration_ms"] = event.session_duration_ms
        return SESSION_END_METRIC
    metric = TRANSITION_METRICS.get(event.transition or "")
    if metric is None:
        ctx.out.drop(UNSUPPORTED_TRANSITION, event.index, detail=str(event.transition))
    return metric


def _shadowed_by_field(key: str, kind: str, index: int, ctx: EventContext) -> None:
    """Report a custom attribute replaced by a property the event type defines."""
    detail = f"event attribute {key!r} is shadowed by the {kind} field of that name"
    ctx.out.warn(ATTRIBUTE_SHADOWED, index, detail=detail)


def _emit(
    event: Event,
    metric: str,
    properties: dict[str, Any],
    value: float | None,
    time: str | None,
    unique_id: str,
    ctx: EventContext,
) -> None:
    """Check limits and append one Klaviyo event."""
    name = ctx.settings.metric_names.get(metric, metric)
    problem = event_limit_problem(name, properties, ctx.profile.get("properties") or {}, ctx.profile_bytes)
    if problem:
        ctx.out.drop(LIMIT_EXCEEDED, event.index, detail=problem)
        return
    attributes: dict[str, Any] = {
        "properties": properties,
        "metric": _metric_reference(name),
        "unique_id": unique_id,
    }
    if time is not None:
        attributes["time"] = time
    if value is not None:
        attributes["value"] = value
        currency = _currency(event, ctx)
        if currency:
            attributes["value_currency"] = currency
    ctx.out.events.append(
        MappedEvent(unique_id=unique_id, attributes=attributes, profile=ctx.profile, index=event.index)
    )


def _metric_reference(name: str) -> dict[str, Any]:
    """An event's ``metric`` object, one per metric name, shared: never write to a mapped event.

    A dict tree per event was most of what delivery's waiting jobs gave the garbage collector
    to walk; requests and the packer only read it (tests that break a body copy it first).
    """
    found = _METRICS.get(name)
    if found is None:
        if len(_METRICS) >= _MAX_METRICS:
            _METRICS.clear()
        found = _METRICS[name] = {"data": {"type": "metric", "attributes": {"name": name}}}
    return found


def _time_in_range(event: Event, ctx: EventContext) -> bool:
    """Klaviyo accepts times from 1990 to one year ahead; others are dropped here."""
    ms = event.timestamp_ms
    if ms is None or _EARLIEST_MS <= ms <= ctx.now_ms + _YEAR_MS:
        return True
    detail = f"/time: timestamp {ms:.0f} ms is outside 1990 .. now + 1 year"
    ctx.out.drop(LIMIT_EXCEEDED, event.index, detail=detail)
    return False


def _iso_time(ms: float | None) -> str | None:
    """The event time as ISO 8601 UTC (None when the event has none: Klaviyo uses receive time)."""
    if ms is None:
        return None
    minutes, millis = divmod(int(ms), 60_000)
    prefix = _MINUTE_PREFIXES.get(minutes)
    if prefix is None:
        # Formatting a datetime costs microseconds; a user's events share few minutes.
        if len(_MINUTE_PREFIXES) > 4096:
            _MINUTE_PREFIXES.clear()
        prefix = _MINUTE_PREFIXES[minutes] = datetime.fromtimestamp(minutes * 60, tz=UTC).strftime("%Y-%m-%dT%H:%M:")
    seconds, millis = divmod(millis, 1000)
    return f"{prefix}{seconds:02d}.{millis:03d}+00:00"


def _currency(event: Event, ctx: EventContext) -> str | None:
    code = event.currency_code
    if code is None:
        return None
    if _CURRENCY.match(code):
        return code.upper()
    ctx.out.warn(INVALID_CURRENCY, event.index, detail=f"currency_code {code!r} is not an ISO 4217 code")
    return None


def _unique_id(event: Event, event_id: Any, batch_key: str) -> str:
    """``$event_id``, else the source message id, else the Firehose id, else a stable hash."""
    if event_id is not None and not isinstance(event_id, bool) and str(event_id):
        return str(event_id)
    if event.source_message_id:
        return event.source_message_id
    if event.firehose_id:
        return event.firehose_id
    return hashlib.sha256(f"{batch_key}#{event.index}".encode()).hexdigest()[:32]
