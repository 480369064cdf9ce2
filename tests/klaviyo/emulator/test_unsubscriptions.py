"""The bulk unsubscribe job (``POST /api/profile-subscription-bulk-delete-jobs``).

What it records (the unsubscription and the profile's consent), its body rules with their
pointers, its 100-profile limit, and that the latest subscribe or unsubscribe call decides.
"""

from __future__ import annotations

from typing import Any

import pytest

from .helpers import (
    KEY,
    LIST,
    NOW,
    UNSUBSCRIBE,
    Req,
    Resp,
    assert_error,
    bulk_subscription_body,
    client,
    config,
    exchange,
    one,
    server,
    subscriber,
    subscription_body,
    unsubscriber,
    unsubscription_body,
    with_value,
    without,
)

PROFILE = "/data/attributes/profiles/data/0"
ATTRS = f"{PROFILE}/attributes"
SUBS = f"{ATTRS}/subscriptions"
REVOKED = {"consent": "UNSUBSCRIBED"}
EMAIL_SMS = {"email": {"marketing": REVOKED}, "sms": {"marketing": REVOKED, "transactional": REVOKED}}
PUSH_TOKEN = {"token": "f00dcafe", "platform": "ios", "vendor": "apns"}
GET_UNSUBSCRIPTIONS = Req("GET", "/_emulator/unsubscriptions")


def _unsubscribe(*profiles: dict[str, Any], list_id: str | None = LIST) -> Req:
    return server(UNSUBSCRIBE, unsubscription_body(list(profiles) or [unsubscriber()], list_id))


def _consent(state: dict[str, Any], label: str = "jane@example.com") -> tuple[dict[str, str], list[str]]:
    profile = state["profiles"][label]
    return profile["consent"], profile["lists"]


# ---- accepted jobs and what they record ----


def test_an_unsubscription_is_202_with_an_empty_body_and_is_recorded() -> None:
    responses, state = exchange(_unsubscribe(), GET_UNSUBSCRIPTIONS)
    assert responses[0].status == 202 and responses[0].body == b""
    profile_id = state["profiles"]["jane@example.com"]["id"]
    expected = {
        "account": "DEMO01",
        "profile_id": profile_id,
        "list_id": LIST,
        "channels": ["email.marketing"],
        "email": "jane@example.com",
        "phone_number": None,
        "endpoint": f"POST {UNSUBSCRIBE}",
        "time": "2026-11-01T00:00:00+00:00",
        "push_tokens": [],
    }
    assert responses[1].json() == {"unsubscriptions": [expected]}
    assert state["unsubscriptions"] == [expected]
    assert state["subscriptions"] == []


def test_an_unknown_profile_is_created_then_unsubscribed() -> None:
    _, state = one(_unsubscribe())
    assert list(state["profiles"]) == ["jane@example.com"]
    assert _consent(state) == ({"email.marketing": "UNSUBSCRIBED"}, [])


def test_every_channel_and_kind_sent_is_revoked_and_nothing_else() -> None:
    resp, state = one(_unsubscribe(unsubscriber(EMAIL_SMS, email="jane@example.com", phone_number="+15005550006")))
    assert resp.status == 202
    channels = ["email.marketing", "sms.marketing", "sms.transactional"]
    assert state["unsubscriptions"][0]["channels"] == channels
    assert state["unsubscriptions"][0]["phone_number"] == "+15005550006"
    assert _consent(state)[0] == dict.fromkeys(channels, "UNSUBSCRIBED")


def test_whatsapp_conversational_can_be_revoked() -> None:
    channels = {"whatsapp": {"conversational": REVOKED}}
    _, state = one(_unsubscribe(unsubscriber(channels, phone_number="+15005550006")))
    assert state["unsubscriptions"][0]["channels"] == ["whatsapp.conversational"]


def test_a_null_kind_revokes_nothing() -> None:
    channels = {"email": {"marketing": REVOKED}, "sms": {"marketing": None}}
    _, state = one(_unsubscribe(unsubscriber(channels)))
    assert state["unsubscriptions"][0]["channels"] == ["email.marketing"]


def test_the_list_is_optional() -> None:
    resp, state = one(_unsubscribe(list_id=None))
    assert resp.status == 202
    assert state["unsubscriptions"][0]["list_id"] is None


def test_push_tokens_alone_are_accepted_without_a_profile() -> None:
    channels = {"push": {"marketing": REVOKED, "tokens": [PUSH_TOKEN]}}
    resp, state = one(_unsubscribe({"type": "profile", "attributes": {"subscriptions": channels}}))
    assert resp.status == 202
    [record] = state["unsubscriptions"]
    assert (record["profile_id"], record["push_tokens"], record["channels"]) == (None, ["f00dcafe"], ["push.marketing"])
    assert state["profiles"] == {}


def test_push_with_no_token_and_no_contact_has_no_identifier() -> None:
    channels = {"push": {"marketing": REVOKED, "tokens": []}}
    resp, state = one(_unsubscribe({"type": "profile", "attributes": {"subscriptions": channels}}))
    assert_error(resp, 400, pointer=PROFILE)
    assert state["unsubscriptions"] == []


def test_an_invalid_phone_beside_an_email_is_ignored_with_the_partial_failure_header() -> None:
    resp, state = one(_unsubscribe(unsubscriber(email="jane@example.com", phone_number="12345")))
    assert resp.status == 202
    assert resp.headers["X-Klaviyo-Partial-Failure"] == "phone_number"
    assert state["unsubscriptions"][0]["phone_number"] is None


def test_100_profiles_are_accepted() -> None:
    profiles = [unsubscriber(email=f"p{i}@example.com") for i in range(100)]
    resp, state = one(_unsubscribe(*profiles))
    assert resp.status == 202
    assert len(state["unsubscriptions"]) == 100


def test_101_profiles_are_400_and_nothing_is_recorded() -> None:
    profiles = [unsubscriber(email=f"p{i}@example.com") for i in range(101)]
    resp, state = one(_unsubscribe(*profiles))
    error = assert_error(resp, 400, pointer="/data/attributes/profiles/data")
    assert "100" in error["detail"]
    assert state["unsubscriptions"] == [] and state["profiles"] == {}


def test_one_bad_profile_fails_the_whole_job() -> None:
    resp, state = one(_unsubscribe(unsubscriber(), unsubscriber(email="joe@")))
    assert_error(resp, 400, pointer="/data/attributes/profiles/data/1/attributes/email")
    assert state["unsubscriptions"] == [] and state["profiles"] == {}


# ---- every body rule, with its pointer ----

BODY = unsubscription_body([unsubscriber()])
SMS = {"sms": {"marketing": REVOKED}}

BAD_BODIES: dict[str, tuple[Any, str]] = {
    "job type": (with_value(BODY, "data/type", "profile-subscription-bulk-create-job"), "/data/type"),
    "no attributes": (without(BODY, "data/attributes"), "/data/attributes"),
    "no profiles": (without(BODY, "data/attributes/profiles"), "/data/attributes/profiles"),
    "profiles not an array": (with_value(BODY, "data/attributes/profiles/data", {}), "/data/attributes/profiles/data"),
    "profile type": (with_value(BODY, f"{PROFILE}/type", "profiles"), f"{PROFILE}/type"),
    "profile id": (with_value(BODY, f"{PROFILE}/id", "01EMU1"), f"{PROFILE}/id"),
    "custom_source": (with_value(BODY, "data/attributes/custom_source", "x"), "/data/attributes/custom_source"),
    "historical_import": (
        with_value(BODY, "data/attributes/historical_import", True),
        "/data/attributes/historical_import",
    ),
    "unknown attribute": (with_value(BODY, f"{ATTRS}/external_id", "mp-1"), f"{ATTRS}/external_id"),
    "email not a string": (with_value(BODY, f"{ATTRS}/email", 42), f"{ATTRS}/email"),
    "no subscriptions": (without(BODY, f"{ATTRS}/subscriptions"), SUBS),
    "null subscriptions": (with_value(BODY, f"{ATTRS}/subscriptions", None), SUBS),
    "empty subscriptions": (with_value(BODY, f"{ATTRS}/subscriptions", {}), SUBS),
    "unknown channel": (with_value(BODY, f"{SUBS}/mail", {"marketing": REVOKED}), f"{SUBS}/mail"),
    "unknown kind": (with_value(BODY, f"{SUBS}/email/transactional", REVOKED), f"{SUBS}/email/transactional"),
    "consent subscribed": (
        with_value(BODY, f"{SUBS}/email/marketing/consent", "SUBSCRIBED"),
        f"{SUBS}/email/marketing/consent",
    ),
    "consent lower case": (
        with_value(BODY, f"{SUBS}/email/marketing/consent", "unsubscribed"),
        f"{SUBS}/email/marketing/consent",
    ),
    "no consent": (with_value(BODY, f"{SUBS}/email/marketing", {}), f"{SUBS}/email/marketing/consent"),
    "consented_at": (
        with_value(BODY, f"{SUBS}/email/marketing/consented_at", "2026-10-01T00:00:00Z"),
        f"{SUBS}/email/marketing/consented_at",
    ),
    "push without tokens": (with_value(BODY, f"{SUBS}/push", {"marketing": REVOKED}), f"{SUBS}/push/tokens"),
    "push anonymous_id": (
        with_value(BODY, f"{SUBS}/push", {"marketing": REVOKED, "tokens": [], "anonymous_id": "a"}),
        f"{SUBS}/push/anonymous_id",
    ),
    "push token platform": (
        with_value(BODY, f"{SUBS}/push", {"marketing": REVOKED, "tokens": [{**PUSH_TOKEN, "platform": "web"}]}),
        f"{SUBS}/push/tokens/0/platform",
    ),
    "email channel without email": (unsubscription_body([unsubscriber(phone_number="+15005550006")]), f"{ATTRS}/email"),
    "sms channel without phone": (unsubscription_body([unsubscriber(SMS)]), f"{ATTRS}/phone_number"),
    "sms channel with a bad phone": (
        unsubscription_body([unsubscriber(SMS, email="jane@example.com", phone_number="555-0100")]),
        f"{ATTRS}/phone_number",
    ),
    "invalid email": (with_value(BODY, f"{ATTRS}/email", "jane@example"), f"{ATTRS}/email"),
    "list type": (with_value(BODY, "data/relationships/list/data/type", "lists"), "/data/relationships/list/data/type"),
    "list without id": (without(BODY, "data/relationships/list/data/id"), "/data/relationships/list/data/id"),
    "list without data": (with_value(BODY, "data/relationships/list", {}), "/data/relationships/list/data"),
    "unknown list": (with_value(BODY, "data/relationships/list/data/id", "NOPE01"), "/data/relationships/list/data/id"),
    "unknown relationship": (with_value(BODY, "data/relationships/segment", {}), "/data/relationships/segment"),
}


@pytest.mark.parametrize(("body", "pointer"), BAD_BODIES.values(), ids=list(BAD_BODIES))
def test_a_body_breaking_a_rule_is_400_at_its_pointer_and_records_nothing(body: Any, pointer: str) -> None:
    resp, state = one(server(UNSUBSCRIBE, body))
    assert_error(resp, 400, pointer=pointer)
    assert state["unsubscriptions"] == [] and state["profiles"] == {}
    assert state["rejected"][0]["pointer"] == pointer


def test_an_unknown_profile_attribute_names_the_profile_resource() -> None:
    resp, _ = one(server(UNSUBSCRIBE, BAD_BODIES["unknown attribute"][0]))
    assert resp.error()["detail"] == "'external_id' is not a valid field for the resource 'profile'."


def test_a_body_that_is_not_json_is_400_at_data() -> None:
    req = server(UNSUBSCRIBE, None)
    req.body = b'{"data": '
    assert_error(one(req)[0], 400, pointer="/data", detail="The payload provided in the request is invalid.")


# ---- the order of subscribe and unsubscribe calls decides ----


def _subscribe_bulk(*channels: str) -> Req:
    subs = {channel: {"marketing": {"consent": "SUBSCRIBED"}} for channel in channels or ("email",)}
    profile = subscriber(subs, email="jane@example.com", phone_number="+15005550006")
    return server("/api/profile-subscription-bulk-create-jobs", bulk_subscription_body([profile]))


def test_subscribe_then_unsubscribe_leaves_the_profile_unsubscribed_and_off_the_list() -> None:
    _, state = exchange(_subscribe_bulk(), _unsubscribe())
    assert _consent(state) == ({"email.marketing": "UNSUBSCRIBED"}, [])
    assert len(state["subscriptions"]) == 1 and len(state["unsubscriptions"]) == 1
    assert state["subscriptions"][0]["profile_id"] == state["unsubscriptions"][0]["profile_id"]


def test_unsubscribe_then_subscribe_leaves_the_profile_subscribed_and_on_the_list() -> None:
    _, state = exchange(_unsubscribe(), _subscribe_bulk())
    assert _consent(state) == ({"email.marketing": "SUBSCRIBED"}, [LIST])


def test_a_client_subscription_is_revoked_by_a_later_unsubscribe_too() -> None:
    _, state = exchange(client("/client/subscriptions", subscription_body()), _unsubscribe())
    assert _consent(state) == ({"email.marketing": "UNSUBSCRIBED"}, [])


def test_unsubscribing_one_channel_leaves_the_others_subscribed() -> None:
    sms_only = unsubscriber(SMS, phone_number="+15005550006")
    _, state = exchange(_subscribe_bulk("email", "sms"), _unsubscribe(sms_only))
    assert _consent(state) == ({"email.marketing": "SUBSCRIBED", "sms.marketing": "UNSUBSCRIBED"}, [])


def test_an_unsubscribe_without_a_list_keeps_the_list_membership() -> None:
    _, state = exchange(_subscribe_bulk(), _unsubscribe(list_id=None))
    assert _consent(state) == ({"email.marketing": "UNSUBSCRIBED"}, [LIST])


def test_an_unsubscribe_matches_the_subscribed_profile_by_phone() -> None:
    by_phone = unsubscriber(SMS, phone_number="+15005550006")
    _, state = exchange(_subscribe_bulk("sms"), _unsubscribe(by_phone))
    assert len(state["profiles"]) == 1
    assert _consent(state)[0] == {"sms.marketing": "UNSUBSCRIBED"}


def test_an_unsubscribe_in_another_account_leaves_this_accounts_profile_alone() -> None:
    scopes = frozenset({"lists:write", "profiles:write", "subscriptions:write"})
    cfg = config(private_keys={KEY: scopes, "pk_other": scopes}, key_accounts={KEY: "DEMO01", "pk_other": "OTHER1"})
    other = server(UNSUBSCRIBE, unsubscription_body([unsubscriber()]), key="pk_other")
    _, state = exchange(_subscribe_bulk(), other, cfg=cfg)
    consents = {p["account"]: p["consent"] for p in state["profiles"].values()}
    assert consents == {"DEMO01": {"email.marketing": "SUBSCRIBED"}, "OTHER1": {"email.marketing": "UNSUBSCRIBED"}}


# ---- auth and rate limits, as on the other private endpoints ----


def test_the_public_key_is_not_a_private_key() -> None:
    as_query = _unsubscribe()
    as_query.path += "?company_id=DEMO01"
    del as_query.headers["Authorization"]
    as_key = server(UNSUBSCRIBE, BODY, key="DEMO01")
    responses, state = exchange(as_query, as_key)
    assert_error(responses[0], 401, "not_authenticated", parameter="Authorization")
    assert_error(responses[1], 401, "authentication_failed", parameter="Authorization")
    assert state["unsubscriptions"] == []


def test_a_key_without_the_list_and_profile_scopes_is_403_naming_them() -> None:
    cfg = config(private_keys={"pk_subs": frozenset({"subscriptions:write", "data-privacy:write"})})
    resp, state = one(server(UNSUBSCRIBE, BODY, key="pk_subs"), cfg)
    error = assert_error(resp, 403, "permission_denied", parameter="Authorization")
    assert error["detail"] == "This API key is missing required scopes: lists:write, profiles:write."
    assert state["unsubscriptions"] == []


def _burst(count: int, at: float = NOW) -> list[Req]:
    reqs = []
    for i in range(count):
        req = _unsubscribe(unsubscriber(email=f"p{at}-{i}@example.com"))
        req.at = at
        reqs.append(req)
    return reqs


def test_the_default_burst_limit_is_75_a_second() -> None:
    responses, state = exchange(*_burst(76), *_burst(1, at=NOW + 1))
    assert [r.status for r in responses].count(202) == 76
    throttled: Resp = responses[75]
    assert_error(throttled, 429, "throttled", pointer="/data")
    assert throttled.headers["Retry-After"] == "1"
    assert not any(name.lower().startswith("ratelimit-") for name in throttled.headers)
    assert responses[0].headers["RateLimit-Limit"] == "750"
    assert state["throttled"] == 1 and len(state["unsubscriptions"]) == 76


def test_the_steady_limit_throttles_until_the_next_minute() -> None:
    cfg = config(rate_limits={f"POST {UNSUBSCRIBE}": (2, 3)})
    responses, _ = exchange(
        *_burst(2), *_burst(1, at=NOW + 1), *_burst(1, at=NOW + 2), *_burst(1, at=NOW + 60), cfg=cfg
    )
    assert [r.status for r in responses] == [202, 202, 202, 429, 202]
    assert responses[3].headers["Retry-After"] == "58"
