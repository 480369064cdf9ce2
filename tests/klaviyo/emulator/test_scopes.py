"""Per-key scopes, changed at run time: a revoked key is 401, a key missing a scope is 403 naming it.

Also the empty-body probe ``check`` relies on: the credentials are judged before the body, so a
good key gets 400 and nothing is recorded.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from mparticle_klaviyo.klaviyo.emulator import RunningEmulator

from .helpers import KEY, Req, assert_error, config, encode, event_body, one, run, send, server

BULK_EVENTS = "/api/event-bulk-create-jobs"
BULK_SUBSCRIBE = "/api/profile-subscription-bulk-create-jobs"


def test_a_key_missing_a_scope_gets_403_naming_the_missing_scopes() -> None:
    cfg = config(private_keys={"pk_events_only": frozenset({"events:write"})})
    resp, state = one(server(BULK_SUBSCRIBE, {}, key="pk_events_only"), cfg)
    error = assert_error(resp, 403, "permission_denied", parameter="Authorization")
    assert (
        error["detail"] == "This API key is missing required scopes: lists:write, profiles:write, subscriptions:write."
    )
    assert state["subscriptions"] == []


def test_credentials_are_judged_before_the_body_so_an_empty_body_proves_a_good_key_with_a_400() -> None:
    resp, state = one(server(BULK_EVENTS, {}))
    assert resp.status == 400
    assert resp.error()["code"] == "invalid"
    assert (state["events"], state["events_recorded"]) == ([], 0)


def test_keys_can_be_listed_added_narrowed_and_revoked_at_run_time() -> None:
    async def scenario(running: RunningEmulator, session: aiohttp.ClientSession) -> list[tuple[int, Any]]:
        async def control(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            resp = await send(session, running.url, Req(method, path, None if body is None else encode(body)), cfg)
            return resp.status, resp.json()

        async def post_event() -> int:
            return (await send(session, running.url, server("/api/events", event_body()), cfg)).status

        seen = [await control("GET", "/_emulator/keys")]
        seen.append((await post_event(), None))
        seen.append(await control("POST", "/_emulator/keys", {"key": KEY, "scopes": ["profiles:write"]}))
        seen.append((await post_event(), None))
        seen.append(await control("DELETE", f"/_emulator/keys/{KEY}"))
        seen.append((await post_event(), None))
        seen.append(await control("POST", "/_emulator/keys", {"key": KEY, "account": "OTHER1"}))
        seen.append((await post_event(), None))
        seen.append(await control("DELETE", "/_emulator/keys/pk_nobody"))
        return seen

    cfg = config()
    seen = run(scenario, cfg)
    all_scopes = ["data-privacy:write", "events:write", "lists:write", "profiles:write", "subscriptions:write"]
    assert seen[0] == (200, {"keys": {KEY: {"scopes": all_scopes, "account": "DEMO01"}}})
    assert seen[1][0] == 202
    assert seen[2] == (200, {"keys": {KEY: {"scopes": ["profiles:write"], "account": "DEMO01"}}})
    assert seen[3][0] == 403, "the scope was taken away"
    assert seen[4] == (200, {"keys": {}})
    assert seen[5][0] == 401, "a revoked key"
    assert seen[6] == (200, {"keys": {KEY: {"scopes": all_scopes, "account": "OTHER1"}}}), "restored, every scope"
    assert seen[7][0] == 202
    assert seen[8][0] == 404


def test_a_bad_key_request_is_refused_with_a_reason() -> None:
    async def scenario(running: RunningEmulator, session: aiohttp.ClientSession) -> list[tuple[int, Any]]:
        bodies: list[Any] = [[], {"key": ""}, {"key": "pk_x", "scopes": "events:write"}, {"key": "pk_x", "bad": 1}]
        answers = []
        for body in bodies:
            resp = await send(session, running.url, Req("POST", "/_emulator/keys", encode(body)), cfg)
            answers.append((resp.status, resp.json()["error"]))
        return answers

    cfg = config()
    answers = run(scenario, cfg)
    assert [status for status, _ in answers] == [400] * 4
    assert "JSON object" in answers[0][1]
    assert "non-empty" in answers[1][1]
    assert "list of scope names" in answers[2][1]
    assert "unknown fields ['bad']" in answers[3][1]
    assert cfg.private_keys == {KEY: cfg.private_keys[KEY]}, "nothing was added"
