"""Reserved event attribute keys (``$value``, ``$event_id``): matched in any case, near misses reported.

User attributes are matched case-insensitively, so event keys are too: ``$Value`` is ``$value``.
When several spellings are present the exact one wins, else the lowest key (code-point order),
whatever the order of keys in the JSON. Keys that differ only by separators or ``$`` signs
(``$eventid``, ``event_id``, ``$event-id``, ``$$value``) are not taken for the reserved key: they
stay properties, with a ``near_reserved_key`` warning. ``value`` without any ``$`` is an
ordinary property name and is not reported.
"""

from __future__ import annotations

from typing import Any

from mparticle_klaviyo.mapping.result import ATTRIBUTE_SHADOWED, NEAR_RESERVED_KEY, MappedBatch

VALUE = "$value"
EVENT_ID = "$event_id"
_RESERVED = frozenset((VALUE, EVENT_ID))

# What a key is: (reserved, False) a spelling of it, (reserved, True) a near miss of it.
_Kind = tuple[str, bool]
# Keys repeat from event to event (one schema per app), so each is classified once. The set of
# keys known to be ordinary lets the mapper's usual case be one C-level check:
# ``ORDINARY_KEYS.issuperset(properties)`` once the exact spellings are popped. Both are bounded.
ORDINARY_KEYS: set[str] = set()
_KINDS: dict[str, _Kind] = {}
_MAX_KEYS = 8192


def other_spellings(
    attributes: dict[str, Any], properties: dict[str, Any], event_id: Any, value: Any, index: int, out: MappedBatch
) -> tuple[Any, Any, str]:
    """(event id, value, the value's key) once other spellings are popped from ``properties``.

    ``properties`` is a copy of ``attributes`` from which the exact spellings were already
    popped (giving ``event_id`` and ``value``); other spellings lose to them, near misses stay.
    """
    hits = [(*kind, key) for key in properties if (kind := _kind(key))]
    event_id_key = _choose(EVENT_ID, hits, EVENT_ID in attributes, properties, index, out)
    value_key = _choose(VALUE, hits, VALUE in attributes, properties, index, out)
    if event_id_key not in (None, EVENT_ID):
        event_id = properties.pop(event_id_key)
    if value_key not in (None, VALUE):
        value = properties.pop(value_key)
    return event_id, value, value_key or VALUE


def _choose(
    reserved: str,
    hits: list[tuple[str, bool, str]],
    exact: bool,
    properties: dict[str, Any],
    index: int,
    out: MappedBatch,
) -> str | None:
    """The key taken for ``reserved`` (already popped if ``exact``); other spellings are popped, all reported."""
    for key in sorted(key for r, near, key in hits if r == reserved and near):
        detail = f"event attribute {key!r} looks like {reserved!r} but is not it; sent as a property"
        out.warn(NEAR_RESERVED_KEY, index, detail=detail)
    spellings = sorted(key for r, near, key in hits if r == reserved and not near)
    if not spellings:
        return reserved if exact else None
    winner = reserved if exact else spellings[0]
    for key in spellings:
        if key != winner:
            properties.pop(key)
            out.warn(ATTRIBUTE_SHADOWED, index, detail=f"event attribute {key!r} is shadowed by {winner!r}")
    return winner


def _kind(key: str) -> _Kind | None:
    """What a key is, or None for an ordinary key (remembered, so the next event skips it)."""
    kind = _KINDS.get(key)
    if kind is not None or key in ORDINARY_KEYS:
        return kind
    kind = _classify(key)
    if len(ORDINARY_KEYS) + len(_KINDS) >= _MAX_KEYS:
        ORDINARY_KEYS.clear()  # hostile input with endless distinct keys cannot grow these
        _KINDS.clear()
    if kind is None:
        ORDINARY_KEYS.add(key)
    else:
        _KINDS[key] = kind
    return kind


def _classify(key: str) -> _Kind | None:
    """Spelling of a reserved key in any case, near miss of one, or ordinary."""
    lowered = key.lower()
    if lowered in _RESERVED:
        return (lowered, False)
    letters = "".join(ch for ch in lowered if ch.isalnum())
    if letters == "eventid":
        return (EVENT_ID, True)
    if letters == "value" and "$" in key:
        return (VALUE, True)
    return None
