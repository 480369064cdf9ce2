"""Runtime fault injection: 5xx answers, connection resets and delays, for resilience tests.

A rule is a JSON object (``POST /_emulator/faults``)::

    {"status": 503, "count": 5}                 next 5 requests answer 503
    {"reset": true, "probability": 0.1}         each request: 10 % chance the connection resets
    {"delay_ms": 200, "count": 10}              next 10 requests answered 200 ms late (normally)
    {"path": "/client/events", "status": 502}   only that path; until the rules are cleared

``count`` limits how many requests a rule hits (default: unlimited); ``probability`` (default
1) is drawn per matching request. ``delay_ms`` may be combined with ``status`` or ``reset``.
The first matching rule wins. ``DELETE /_emulator/faults`` removes every rule.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any

_KEYS = frozenset({"status", "reset", "delay_ms", "count", "probability", "path"})


@dataclass(slots=True)
class FaultRule:
    """One fault rule; ``count`` None means unlimited."""

    status: int | None = None
    reset: bool = False
    delay_ms: int = 0
    count: int | None = None
    probability: float = 1.0
    path: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The rule as shown by the control endpoint."""
        return asdict(self)


def parse_rule(spec: object) -> FaultRule:
    """Build a rule from its JSON form; ValueError says what is wrong."""
    if not isinstance(spec, dict):
        raise ValueError("a fault rule must be a JSON object")
    unknown = set(spec) - _KEYS
    if unknown:
        raise ValueError(f"unknown fault keys: {sorted(unknown)}")
    rule = FaultRule(
        status=_opt_int(spec, "status", 400, 599),
        reset=_bool(spec, "reset"),
        delay_ms=_opt_int(spec, "delay_ms", 0, 600_000) or 0,
        count=_opt_int(spec, "count", 1, 10**9),
        probability=_probability(spec),
        path=_path(spec),
    )
    if rule.status is None and not rule.reset and not rule.delay_ms:
        raise ValueError("a fault rule needs 'status', 'reset' or 'delay_ms'")
    return rule


def _opt_int(spec: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = spec.get(key)
    if value is None:
        return None
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f"'{key}' must be an integer from {low} to {high}")
    return value


def _bool(spec: dict[str, Any], key: str) -> bool:
    value = spec.get(key, False)
    if type(value) is not bool:
        raise ValueError(f"'{key}' must be a boolean")
    return value


def _probability(spec: dict[str, Any]) -> float:
    value = spec.get("probability", 1.0)
    if type(value) not in (int, float) or not 0 <= value <= 1:
        raise ValueError("'probability' must be a number from 0 to 1")
    return float(value)


def _path(spec: dict[str, Any]) -> str | None:
    value = spec.get("path")
    if value is None:
        return None
    if type(value) is not str or not value.startswith("/"):
        raise ValueError("'path' must be an absolute path such as /client/events")
    return value.rstrip("/") or "/"


class Faults:
    """The active rules; ``pick`` decides, per request, which one (if any) fires."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        """Activate ``rule`` after the existing ones."""
        self.rules.append(rule)

    def clear(self) -> None:
        """Remove every rule."""
        self.rules.clear()

    def pick(self, path: str) -> FaultRule | None:
        """The rule that fires for a request to ``path``, spending one of its ``count``."""
        for rule in self.rules:
            if rule.path is not None and rule.path != path:
                continue
            if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                continue
            if rule.count is not None:
                rule.count -= 1
                if rule.count == 0:
                    self.rules.remove(rule)
            return rule
        return None
