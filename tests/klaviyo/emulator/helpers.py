"""Test helpers: run requests against a real emulator on loopback, and build Klaviyo bodies."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import msgspec

from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig, RunningEmulator, start_emulator

T = TypeVar("T")
REVISION = "2026-07-15"
COMPANY = "DEMO01"
KEY = "pk_demo_private_key"
LIST = "LIST01"
JSON_API = "application/vnd.api+json"
NOW = 1_793_491_200.0  # 2026-11-01T00:00:00Z, a minute boundary: a fixed clock for every test


class FakeClock:
    """A settable clock for the emulator: rate windows and time rules without sleeping."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Resp:
    """A response read in full."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return msgspec.json.decode(self.body)

    def error(self) -> dict[str, Any]:
        errors: list[dict[str, Any]] = self.json()["errors"]
        assert len(errors) == 1
        return errors[0]


@dataclass
class Req:
    """One request to send; ``at`` moves the fake clock first."""

    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    at: float | None = None


def config(**overrides: Any) -> EmulatorConfig:
    """A test configuration on a fake clock."""
    overrides.setdefault("clock", FakeClock())
    return EmulatorConfig(**overrides)


def encode(body: Any) -> bytes:
    return msgspec.json.encode(body)


def client(path: str, body: Any, company: str | None = COMPANY, **headers: str) -> Req:
    """A /client/* request with the public key in ``company_id``."""
    query = "" if company is None else f"?company_id={company}"
    return Req("POST", path + query, encode(body), {**base_headers(), **headers})


def server(path: str, body: Any, key: str | None = KEY, **headers: str) -> Req:
    """A /api/* request with a private key."""
    auth = {} if key is None else {"Authorization": f"Klaviyo-API-Key {key}"}
    return Req("POST", path, encode(body), {**base_headers(), **auth, **headers})


def base_headers() -> dict[str, str]:
    return {"revision": REVISION, "Content-Type": JSON_API, "Accept": JSON_API}


async def send(session: aiohttp.ClientSession, url: str, req: Req, cfg: EmulatorConfig) -> Resp:
    if req.at is not None:
        clock = cfg.clock
        assert isinstance(clock, FakeClock)
        clock.now = req.at
    # skip_auto_headers: a test must control Content-Type exactly (or send none).
    async with session.request(
        req.method, url + req.path, data=req.body, headers=req.headers, skip_auto_headers=["Content-Type"]
    ) as response:
        return Resp(response.status, dict(response.headers), await response.read())


def run(
    scenario: Callable[[RunningEmulator, aiohttp.ClientSession], Awaitable[T]], cfg: EmulatorConfig | None = None
) -> T:
    """Start an emulator, run ``scenario`` against it with a client session, stop it."""

    async def main() -> T:
        running = await start_emulator(cfg or config())
        try:
            async with aiohttp.ClientSession() as session:
                return await scenario(running, session)
        finally:
            await running.close()

    return asyncio.run(main())


def exchange(*reqs: Req, cfg: EmulatorConfig | None = None) -> tuple[list[Resp], dict[str, Any]]:
    """Send ``reqs`` in order to a fresh emulator; return the responses and the final state."""
    cfg = cfg or config()

    async def scenario(running: RunningEmulator, session: aiohttp.ClientSession) -> tuple[list[Resp], dict[str, Any]]:
        responses = [await send(session, running.url, req, cfg) for req in reqs]
        state = await send(session, running.url, Req("GET", "/_emulator/state"), cfg)
        return responses, state.json()

    return run(scenario, cfg)


def one(req: Req, cfg: EmulatorConfig | None = None) -> tuple[Resp, dict[str, Any]]:
    """Send one request to a fresh emulator."""
    responses, state = exchange(req, cfg=cfg)
    return responses[0], state


def assert_error(
    resp: Resp,
    status: int,
    code: str = "invalid",
    *,
    pointer: str | None = None,
    parameter: str | None = None,
    detail: str | None = None,
) -> dict[str, Any]:
    """Check Klaviyo's error shape and the fields given; return the error object."""
    assert resp.status == status, resp.body[:400]
    assert resp.headers["Content-Type"].startswith(JSON_API)
    error = resp.error()
    assert set(error) == {"id", "status", "code", "title", "detail", "source", "links", "meta"}
    uuid.UUID(error["id"])
    assert error["status"] == status
    assert error["code"] == code
    assert isinstance(error["title"], str) and error["title"]
    assert isinstance(error["detail"], str) and error["detail"]
    assert len(error["source"]) == 1 and set(error["source"]) <= {"pointer", "parameter"}
    if pointer is not None:
        assert error["source"] == {"pointer": pointer}, error
    if parameter is not None:
        assert error["source"] == {"parameter": parameter}, error
    if detail is not None:
        assert error["detail"] == detail, error
    if code == "invalid":
        assert error["title"] == "Invalid input."
    return error


# ---- bodies (built here, independently of the project's payload builders) ----


def metric(name: str = "Ordered Product") -> dict[str, Any]:
    return {"data": {"type": "metric", "attributes": {"name": name}}}


def event_attrs(**overrides: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "properties": {"Brand": "Kids Book", "Categories": ["Fiction"]},
        "time": "2026-05-01T12:34:56+00:00",
        "value": 9.99,
        "value_currency": "USD",
        "unique_id": "evt-1",
        "metric": metric(),
    }
    attrs.update(overrides)
    return attrs


def event_body(profile: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """A valid /client/events (and /api/events) body."""
    attrs = event_attrs(**overrides)
    profile_attrs = dict(profile) if profile is not None else {"email": "jane@example.com"}
    attrs["profile"] = {"data": {"type": "profile", "attributes": profile_attrs}}
    return {"data": {"type": "event", "attributes": attrs}}


def bulk_event(unique_id: str, name: str = "Viewed Product", **overrides: Any) -> dict[str, Any]:
    attrs: dict[str, Any] = {"properties": {}, "unique_id": unique_id, "metric": metric(name)}
    attrs.update(overrides)
    return {"type": "event", "attributes": attrs}


def bulk_entry(profile: Mapping[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "event-bulk-create",
        "attributes": {
            "profile": {"data": {"type": "profile", "attributes": dict(profile)}},
            "events": {"data": events},
        },
    }


def client_bulk_body(events: list[dict[str, Any]], profile: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A valid /client/event-bulk-create body."""
    return {"data": bulk_entry(profile or {"email": "jane@example.com"}, events)}


def server_bulk_body(*entries: dict[str, Any]) -> dict[str, Any]:
    """A valid /api/event-bulk-create-jobs body."""
    return {
        "data": {
            "type": "event-bulk-create-job",
            "attributes": {"events-bulk-create": {"data": list(entries)}},
        }
    }


def profile_body(**attrs: Any) -> dict[str, Any]:
    """A valid /client/profiles body."""
    attrs = attrs or {"email": "jane@example.com", "first_name": "Jane"}
    return {"data": {"type": "profile", "attributes": attrs}}


def import_body(**attrs: Any) -> dict[str, Any]:
    """A valid /api/profile-import body."""
    return profile_body(**attrs)


def subscription_body(
    subscriptions: dict[str, Any] | None = None, list_id: str | None = LIST, **profile: Any
) -> dict[str, Any]:
    """A valid /client/subscriptions body."""
    profile = profile or {"email": "jane@example.com"}
    if subscriptions is not None:
        profile["subscriptions"] = subscriptions
    data: dict[str, Any] = {
        "type": "subscription",
        "attributes": {
            "custom_source": "mParticle consent sync",
            "profile": {"data": {"type": "profile", "attributes": profile}},
        },
    }
    if list_id is not None:
        data["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
    return {"data": data}


def bulk_subscription_body(
    profiles: list[dict[str, Any]], historical: bool | None = None, list_id: str | None = LIST
) -> dict[str, Any]:
    """A valid /api/profile-subscription-bulk-create-jobs body."""
    attrs: dict[str, Any] = {"custom_source": "mParticle consent sync", "profiles": {"data": profiles}}
    if historical is not None:
        attrs["historical_import"] = historical
    data: dict[str, Any] = {"type": "profile-subscription-bulk-create-job", "attributes": attrs}
    if list_id is not None:
        data["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
    return {"data": data}


def subscriber(subscriptions: dict[str, Any] | None = None, **attrs: Any) -> dict[str, Any]:
    attrs = attrs or {"email": "jane@example.com"}
    attrs["subscriptions"] = subscriptions or {"email": {"marketing": {"consent": "SUBSCRIBED"}}}
    return {"type": "profile", "attributes": attrs}


UNSUBSCRIBE = "/api/profile-subscription-bulk-delete-jobs"
DELETE_PROFILE = "/api/data-privacy-deletion-jobs"


def unsubscriber(subscriptions: dict[str, Any] | None = None, **attrs: Any) -> dict[str, Any]:
    """One profile of an unsubscribe job; by default email marketing for jane@example.com."""
    attrs = attrs or {"email": "jane@example.com"}
    attrs["subscriptions"] = subscriptions or {"email": {"marketing": {"consent": "UNSUBSCRIBED"}}}
    return {"type": "profile", "attributes": attrs}


def unsubscription_body(profiles: list[dict[str, Any]], list_id: str | None = LIST) -> dict[str, Any]:
    """A valid /api/profile-subscription-bulk-delete-jobs body."""
    data: dict[str, Any] = {
        "type": "profile-subscription-bulk-delete-job",
        "attributes": {"profiles": {"data": profiles}},
    }
    if list_id is not None:
        data["relationships"] = {"list": {"data": {"type": "list", "id": list_id}}}
    return {"data": data}


def deletion_body(profile_id: str | None = None, **attrs: Any) -> dict[str, Any]:
    """A valid /api/data-privacy-deletion-jobs body naming the profile by ``attrs`` or ``profile_id``."""
    profile: dict[str, Any] = {"type": "profile", "attributes": attrs}
    if profile_id is not None:
        profile["id"] = profile_id
    return {"data": {"type": "data-privacy-deletion-job", "attributes": {"profile": {"data": profile}}}}


def with_value(body: Any, path: str, value: Any) -> Any:
    """A deep copy of ``body`` with the member at slash-separated ``path`` set to ``value``.

    Missing intermediate objects are created.
    """
    result = copy.deepcopy(body)
    *parents, last = path.strip("/").split("/")
    node = result
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return result


def without(body: Any, path: str) -> Any:
    """A deep copy of ``body`` with the member at ``path`` removed."""
    result = copy.deepcopy(body)
    *parents, last = path.strip("/").split("/")
    node = result
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    del node[last]
    return result
