"""Inspection and control endpoints under ``/_emulator/`` (not part of Klaviyo's API).

* ``GET /_emulator/state``: everything recorded (see :meth:`State.snapshot`).
* ``GET /_emulator/unsubscriptions``: ``{"unsubscriptions": [...]}``, one entry per profile of
  each accepted unsubscribe job: ``{account, profile_id, list_id, channels, email,
  phone_number, endpoint, time, push_tokens}``.
* ``GET /_emulator/deletions``: ``{"deletions": [...]}``, one entry per accepted deletion job:
  ``{account, identifier: {kind: value}, profile_ids, events_deleted, subscriptions_deleted,
  unsubscriptions_deleted, endpoint, time}`` (``profile_ids`` empty when nothing matched).
* ``POST /_emulator/reset``: forget recorded state and rate-limit counts; keep config and faults.
* ``GET|POST|DELETE /_emulator/faults``: list, add (one rule object, see :mod:`.faults`) or
  clear fault rules.
* ``GET|POST /_emulator/limits``: show or override rate limits, e.g.
  ``{"POST /client/events": [2, 10]}`` (per second, per minute).
* ``GET|POST /_emulator/keys``, ``DELETE /_emulator/keys/{key}``: list the private keys with
  their scopes and accounts, add or replace one (``{"key": "pk_x", "scopes": ["events:write"],
  "account": "DEMO01"}``; scopes default to every write scope), or revoke one (then 401).

Control requests are not counted in ``requests`` and are never rate limited or faulted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec
from aiohttp import web

from .config import ALL_WRITE_SCOPES, DEFAULT_RATE_LIMITS
from .faults import parse_rule

if TYPE_CHECKING:
    from .core import Emulator

_encoder = msgspec.json.Encoder()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_encoder.encode(data), content_type="application/json")


def _bad(message: str) -> web.Response:
    return _json({"error": message}, 400)


async def _read(request: web.Request) -> object:
    raw = await request.read()
    return msgspec.json.decode(raw) if raw else {}


class Control:
    """Handlers bound to one emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    async def state(self, request: web.Request) -> web.Response:
        """GET /_emulator/state."""
        return _json(self.emulator.state.snapshot())

    async def unsubscriptions(self, request: web.Request) -> web.Response:
        """GET /_emulator/unsubscriptions: every recorded unsubscription, oldest first."""
        return _json({"unsubscriptions": self.emulator.state.unsubscriptions})

    async def deletions(self, request: web.Request) -> web.Response:
        """GET /_emulator/deletions: every profile deletion request, oldest first."""
        return _json({"deletions": self.emulator.state.deletions})

    async def reset(self, request: web.Request) -> web.Response:
        """POST /_emulator/reset."""
        self.emulator.reset()
        return _json({"reset": True})

    async def faults(self, request: web.Request) -> web.Response:
        """GET /_emulator/faults: the active rules."""
        return _json({"rules": [rule.to_json() for rule in self.emulator.faults.rules]})

    async def add_fault(self, request: web.Request) -> web.Response:
        """POST /_emulator/faults: add one rule."""
        try:
            rule = parse_rule(await _read(request))
        except (msgspec.DecodeError, ValueError) as exc:
            return _bad(str(exc))
        self.emulator.faults.add(rule)
        return await self.faults(request)

    async def clear_faults(self, request: web.Request) -> web.Response:
        """DELETE /_emulator/faults: remove every rule."""
        self.emulator.faults.clear()
        return await self.faults(request)

    async def limits(self, request: web.Request) -> web.Response:
        """GET /_emulator/limits: the effective limit of every endpoint."""
        config = self.emulator.config
        return _json({name: list(config.limits_for(name)) for name in DEFAULT_RATE_LIMITS})

    async def set_limits(self, request: web.Request) -> web.Response:
        """POST /_emulator/limits: override some endpoints' (per second, per minute) limits."""
        try:
            overrides = _parse_limits(await _read(request))
        except (msgspec.DecodeError, ValueError) as exc:
            return _bad(str(exc))
        self.emulator.config.rate_limits.update(overrides)
        return await self.limits(request)

    async def keys(self, request: web.Request) -> web.Response:
        """GET /_emulator/keys: every accepted private key, its scopes and its account."""
        config = self.emulator.config
        listed = {
            key: {"scopes": sorted(scopes), "account": config.account_of_key(key)}
            for key, scopes in config.private_keys.items()
        }
        return _json({"keys": listed})

    async def set_key(self, request: web.Request) -> web.Response:
        """POST /_emulator/keys: add a private key, or replace its scopes (e.g. take one away)."""
        try:
            key, scopes, account = _parse_key(await _read(request))
        except (msgspec.DecodeError, ValueError) as exc:
            return _bad(str(exc))
        config = self.emulator.config
        config.private_keys[key] = scopes
        if account is not None:
            config.key_accounts[key] = account
        return await self.keys(request)

    async def revoke_key(self, request: web.Request) -> web.Response:
        """DELETE /_emulator/keys/{key}: revoke a private key; requests sending it get 401."""
        key = request.match_info["key"]
        if self.emulator.config.private_keys.pop(key, None) is None:
            return _json({"error": "no such key"}, 404)
        return await self.keys(request)


def _parse_key(spec: object) -> tuple[str, frozenset[str], str | None]:
    if not isinstance(spec, dict):
        raise ValueError("a key must be a JSON object")
    key, scopes, account = spec.get("key"), spec.get("scopes", sorted(ALL_WRITE_SCOPES)), spec.get("account")
    if not isinstance(key, str) or not key.strip():
        raise ValueError("'key' must be a non-empty string")
    if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
        raise ValueError("'scopes' must be a list of scope names, e.g. [\"events:write\"]")
    if account is not None and not isinstance(account, str):
        raise ValueError("'account' must be a string")
    unknown = set(spec) - {"key", "scopes", "account"}
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; known: key, scopes, account")
    return key.strip(), frozenset(scopes), account


def _parse_limits(spec: object) -> dict[str, tuple[int, int]]:
    if not isinstance(spec, dict):
        raise ValueError("limits must be a JSON object")
    parsed: dict[str, tuple[int, int]] = {}
    for name, pair in spec.items():
        if name not in DEFAULT_RATE_LIMITS:
            raise ValueError(f"unknown endpoint {name!r}; known: {sorted(DEFAULT_RATE_LIMITS)}")
        ok = isinstance(pair, list) and len(pair) == 2
        if not ok or not all(type(n) is int and n > 0 for n in pair):
            raise ValueError(f"{name!r} needs [per_second, per_minute], positive integers")
        parsed[name] = (pair[0], pair[1])
    return parsed


def add_routes(app: web.Application, emulator: Emulator) -> None:
    """Register the control endpoints on ``app``."""
    control = Control(emulator)
    app.router.add_get("/_emulator/state", control.state)
    app.router.add_get("/_emulator/unsubscriptions", control.unsubscriptions)
    app.router.add_get("/_emulator/deletions", control.deletions)
    app.router.add_post("/_emulator/reset", control.reset)
    app.router.add_get("/_emulator/faults", control.faults)
    app.router.add_post("/_emulator/faults", control.add_fault)
    app.router.add_delete("/_emulator/faults", control.clear_faults)
    app.router.add_get("/_emulator/limits", control.limits)
    app.router.add_post("/_emulator/limits", control.set_limits)
    app.router.add_get("/_emulator/keys", control.keys)
    app.router.add_post("/_emulator/keys", control.set_key)
    app.router.add_delete("/_emulator/keys/{key}", control.revoke_key)
