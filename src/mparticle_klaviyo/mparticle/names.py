"""Canonical names for identities, platforms and app-state transitions across input shapes."""

from __future__ import annotations

import math
from typing import Any

# Batch and Firehose spell some identity types differently (research/mparticle-input.md §5).
_IDENTITY_ALIASES = {
    "customerid": "customer_id",
    "customer": "customer_id",
    **{f"other_id_{n}": f"other{n}" for n in range(2, 11)},
}

# device_info.platform, application_info.os and runtime_environment.type, squashed to one key.
_PLATFORM_ALIASES = {
    "web": "mobileweb",
    "outofband": "customfeeds",
    "unknown": "customfeeds",
    "unityios": "ios",
    "unityandroid": "android",
}

DEFAULT_SUPPORTED_PLATFORMS = (
    "iOS",
    "Android",
    "MobileWeb",
    "tvOS",
    "Roku",
    "Custom Feeds",
    "Alexa",
    "SmartTV",
    "FireTV",
    "Xbox",
)

# Firehose application_state values, and batch application_transition_type values.
_BATCH_TRANSITIONS = {
    "application_exit": "exit",
    "application_background": "background",
    "application_foreground": "foreground",
}


def canonical_identity(identity_type: str) -> str:
    """``other_id_10``/``other10`` -> ``other10``; ``customerid``/``customer`` -> ``customer_id``."""
    key = identity_type.strip().lower()
    return _IDENTITY_ALIASES.get(key, key)


def canonical_platform(name: str) -> str:
    """``iOS``/``ios`` -> ``ios``, ``web``/``MobileWeb`` -> ``mobileweb``, ``out_of_band`` -> ``customfeeds``."""
    key = "".join(ch for ch in name.lower() if ch.isalnum())
    return _PLATFORM_ALIASES.get(key, key)


def batch_transition(kind: str | None, first_run: bool | None, upgrade: bool | None) -> str | None:
    """A batch AST's ``application_transition_type`` in Firehose's vocabulary."""
    if kind == "application_initialized":
        if first_run:
            return "install"
        return "upgrade" if upgrade else "initialize"
    return _BATCH_TRANSITIONS.get(kind or "", kind)


def as_text(value: Any) -> str | None:
    """Identity and id values as text (numbers become their decimal form)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text or None


def as_number(value: Any) -> float | None:
    """A JSON number, or a string holding one, as a finite number (ints stay ints); else None."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _parse_number(value.strip())
    return None


def _parse_number(text: str) -> float | None:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
