"""Profile deletion (``POST /api/data-privacy-deletion-jobs``), and odd unicode in emails.

A deletion names its profile by exactly one of email, phone number or id; it removes the
profile with its events and consent records, and every request is recorded, matched or not.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest

from .helpers import (
    DELETE_PROFILE,
    KEY,
    NOW,
    UNSUBSCRIBE,
    Req,
    assert_error,
    bulk_subscription_body,
    client,
    config,
    deletion_body,
    encode,
    event_body,
    exchange,
    one,
    server,
    subscriber,
    unsubscriber,
    unsubscription_body,
    with_value,
    without,
)

PROFILE = "/data/attributes/profile/data"
ATTRS = f"{PROFILE}/attributes"
JANE = {"email": "jane@example.com", "phone_number": "+15005550006"}
GET_DELETIONS = Req("GET", "/_emulator/deletions")


def _body(req: Req) -> bytes:
    assert req.body is not None
    return req.body


def _delete(profile_id: str | None = None, **attrs: Any) -> Req:
    return server(DELETE_PROFILE, deletion_body(profile_id, **attrs))


def _history(**ids: str) -> list[Req]:
    """Two events, a subscription and an unsubscription for jane@example.com (plus ``ids``)."""
    profile = {"email": "jane@example.com", **ids}
    return [
        server("/api/events", event_body(profile=profile, unique_id="e1")),
        client("/client/events", event_body(profile=profile, unique_id="e2")),
        server("/api/profile-subscription-bulk-create-jobs", bulk_subscription_body([subscriber(None, **profile)])),
        server(UNSUBSCRIBE, unsubscription_body([unsubscriber(email="jane@example.com")], list_id=None)),
    ]


# ---- accepted requests and their effect ----


def test_a_deletion_is_202_and_removes_the_profile_its_events_and_consent_records() -> None:
    joe = server("/api/events", event_body(profile={"email": "joe@example.com"}, unique_id="j1"))
    responses, state = exchange(*_history(**JANE), joe, _delete(email="jane@example.com"), GET_DELETIONS)
    resp = responses[-2]
    assert resp.status == 202 and resp.body == b""
    assert list(state["profiles"]) == ["joe@example.com"]
    assert [e["unique_id"] for e in state["events"]] == ["j1"]
    assert state["subscriptions"] == [] and state["unsubscriptions"] == []
    [deletion] = responses[-1].json()["deletions"]
    assert deletion == {
        "account": "DEMO01",
        "identifier": {"email": "jane@example.com"},
        "profile_ids": [deletion["profile_ids"][0]],
        "events_deleted": 2,
        "subscriptions_deleted": 1,
        "unsubscriptions_deleted": 1,
        "endpoint": f"POST {DELETE_PROFILE}",
        "time": "2026-11-01T00:00:00+00:00",
    }
    assert deletion["profile_ids"][0].startswith("01EMU")
    assert state["deletions"] == [deletion]


def test_a_profile_can_be_deleted_by_phone_number() -> None:
    _, state = exchange(*_history(**JANE), _delete(phone_number="+15005550006"))
    assert state["profiles"] == {} and state["events"] == []
    assert state["deletions"][0]["identifier"] == {"phone_number": "+15005550006"}


def test_a_profile_can_be_deleted_by_id() -> None:
    _, before = exchange(*_history())
    profile_id = before["profiles"]["jane@example.com"]["id"]
    _, state = exchange(*_history(), _delete(profile_id))
    assert state["profiles"] == {} and state["events"] == []
    assert state["deletions"][0]["profile_ids"] == [profile_id]


def test_an_unknown_profile_is_still_202_and_the_request_is_recorded() -> None:
    responses, state = exchange(*_history(), _delete(email="nobody@example.com"), _delete("01EMU999"))
    assert [r.status for r in responses[-2:]] == [202, 202]
    assert list(state["profiles"]) == ["jane@example.com"]
    assert len(state["events"]) == 2
    assert [(d["identifier"], d["profile_ids"], d["events_deleted"]) for d in state["deletions"]] == [
        ({"email": "nobody@example.com"}, [], 0),
        ({"id": "01EMU999"}, [], 0),
    ]


def test_a_deleted_profiles_events_are_recorded_afresh_when_sent_again() -> None:
    event = server("/api/events", event_body(unique_id="e1"))
    _, state = exchange(event, _delete(email="jane@example.com"), event)
    assert len(state["events"]) == 1 and state["duplicates_dropped"] == 0
    assert state["events"][0]["profile_id"] not in state["deletions"][0]["profile_ids"]
    assert state["events_recorded"] == 2, "counters count traffic; deletion does not rewind them"


def test_a_deletion_only_reaches_the_profiles_of_its_own_account() -> None:
    cfg = config(
        private_keys={KEY: frozenset({"events:write", "data-privacy:write"}), "pk_other": frozenset({"events:write"})},
        key_accounts={KEY: "DEMO01", "pk_other": "OTHER1"},
    )
    other = server("/api/events", event_body(unique_id="o1"), key="pk_other")
    _, state = exchange(server("/api/events", event_body()), other, _delete(email="jane@example.com"), cfg=cfg)
    assert [p["account"] for p in state["profiles"].values()] == ["OTHER1"]
    assert [e["unique_id"] for e in state["events"]] == ["o1"]


def test_a_deletion_by_the_id_of_another_accounts_profile_deletes_nothing() -> None:
    cfg = config(
        private_keys={KEY: frozenset({"data-privacy:write"}), "pk_other": frozenset({"events:write"})},
        key_accounts={KEY: "DEMO01", "pk_other": "OTHER1"},
    )
    event = server("/api/events", event_body(), key="pk_other")
    _, before = exchange(event, cfg=cfg)
    foreign_id = before["profiles"]["jane@example.com"]["id"]  # ids are a counter: the same in every run
    responses, state = exchange(event, _delete(foreign_id), cfg=cfg)
    assert responses[1].status == 202
    assert state["profiles"]["jane@example.com"]["id"] == foreign_id and len(state["events"]) == 1
    assert state["deletions"][0]["profile_ids"] == []


# ---- every body rule, with its pointer ----

BODY = deletion_body(email="jane@example.com")

BAD_BODIES: dict[str, tuple[Any, str]] = {
    "email and phone": (deletion_body(**JANE), PROFILE),
    "email and id": (deletion_body("01EMU1", email="jane@example.com"), PROFILE),
    "no identifier": (deletion_body(), PROFILE),
    "only nulls": (deletion_body(None, email=None, phone_number=None), PROFILE),
    "job type": (with_value(BODY, "data/type", "data-privacy-deletion-jobs"), "/data/type"),
    "job id": (with_value(BODY, "data/id", "job-1"), "/data/id"),
    "unknown job attribute": (with_value(BODY, "data/attributes/reason", "GDPR"), "/data/attributes/reason"),
    "no profile": (without(BODY, "data/attributes/profile"), "/data/attributes/profile"),
    "profile not wrapped in data": (
        with_value(BODY, "data/attributes/profile", {"type": "profile", "attributes": {}}),
        "/data/attributes/profile/type",
    ),
    "profile type": (with_value(BODY, f"{PROFILE}/type", "profiles"), f"{PROFILE}/type"),
    "no profile attributes": (without(deletion_body("01EMU1"), f"{PROFILE}/attributes"), f"{ATTRS}"),
    "unknown profile attribute": (deletion_body(external_id="mp-1"), f"{ATTRS}/external_id"),
    "subscriptions": (deletion_body(email="jane@example.com", subscriptions={}), f"{ATTRS}/subscriptions"),
    "email not a string": (deletion_body(email=["jane@example.com"]), f"{ATTRS}/email"),
    "id not a string": (with_value(deletion_body("01EMU1"), f"{PROFILE}/id", 7), f"{PROFILE}/id"),
    "empty id": (deletion_body(""), f"{PROFILE}/id"),
    "empty email": (deletion_body(email=""), f"{ATTRS}/email"),
    "invalid email": (deletion_body(email="jane.example.com"), f"{ATTRS}/email"),
    "phone not e164": (deletion_body(phone_number="(500) 555-0006"), f"{ATTRS}/phone_number"),
    "phone that cannot exist": (deletion_body(phone_number="+10000000000"), f"{ATTRS}/phone_number"),
}


@pytest.mark.parametrize(("body", "pointer"), BAD_BODIES.values(), ids=list(BAD_BODIES))
def test_a_body_breaking_a_rule_is_400_at_its_pointer_and_deletes_nothing(body: Any, pointer: str) -> None:
    responses, state = exchange(*_history(), server(DELETE_PROFILE, body))
    assert_error(responses[-1], 400, pointer=pointer)
    assert state["deletions"] == []
    assert list(state["profiles"]) == ["jane@example.com"] and len(state["events"]) == 2


def test_two_identifiers_are_refused_with_a_reason() -> None:
    resp, _ = one(server(DELETE_PROFILE, BAD_BODIES["email and phone"][0]))
    assert resp.error()["detail"].startswith("Only one of 'email', 'phone_number' or 'id'")


# ---- auth and rate limits, as on the other private endpoints ----


def test_the_public_key_is_not_a_private_key() -> None:
    as_query = _delete(email="jane@example.com")
    as_query.path += "?company_id=DEMO01"
    del as_query.headers["Authorization"]
    responses, state = exchange(as_query, server(DELETE_PROFILE, BODY, key="DEMO01"))
    assert_error(responses[0], 401, "not_authenticated", parameter="Authorization")
    assert_error(responses[1], 401, "authentication_failed", parameter="Authorization")
    assert state["deletions"] == []


def test_a_key_with_every_other_write_scope_is_403_naming_data_privacy() -> None:
    scopes = frozenset({"events:write", "profiles:write", "subscriptions:write", "lists:write"})
    resp, state = one(server(DELETE_PROFILE, BODY, key="pk_no_privacy"), config(private_keys={"pk_no_privacy": scopes}))
    error = assert_error(resp, 403, "permission_denied", parameter="Authorization")
    assert error["detail"] == "This API key is missing required scopes: data-privacy:write."
    assert state["deletions"] == []


def test_the_data_privacy_scope_can_be_granted_alone_at_run_time() -> None:
    grant = Req("POST", "/_emulator/keys", encode({"key": "pk_dpo", "scopes": ["data-privacy:write"]}))
    unsubscribe = server(UNSUBSCRIBE, unsubscription_body([unsubscriber()]), key="pk_dpo")
    responses, _ = exchange(grant, server(DELETE_PROFILE, BODY, key="pk_dpo"), unsubscribe)
    assert responses[0].json()["keys"]["pk_dpo"]["scopes"] == ["data-privacy:write"]
    assert [r.status for r in responses[1:]] == [202, 403]


def test_the_default_limits_are_3_a_second_and_60_a_minute() -> None:
    limits = exchange(Req("GET", "/_emulator/limits"))[0][0].json()
    assert limits[f"POST {DELETE_PROFILE}"] == [3, 60]
    assert limits[f"POST {UNSUBSCRIBE}"] == [75, 750]


def _at(at: float, count: int = 1) -> list[Req]:
    reqs = []
    for i in range(count):
        req = _delete(email=f"p{i}@example.com")
        req.at = at
        reqs.append(req)
    return reqs


def test_a_fourth_deletion_in_one_second_is_429_with_retry_after() -> None:
    responses, state = exchange(*_at(NOW + 0.5, 4), *_at(NOW + 1))
    assert [r.status for r in responses] == [202, 202, 202, 429, 202]
    throttled = assert_error(responses[3], 429, "throttled", pointer="/data")
    assert throttled["detail"] == "Request was throttled. Expected available in 1 second."
    assert responses[3].headers["Retry-After"] == "1"
    assert not any(name.lower().startswith("ratelimit-") for name in responses[3].headers)
    assert responses[0].headers["RateLimit-Limit"] == "60"
    assert len(state["deletions"]) == 4


def test_the_61st_deletion_in_a_minute_waits_for_the_next_minute() -> None:
    steady = [req for second in range(20) for req in _at(NOW + second, 3)]
    responses, _ = exchange(*steady, *_at(NOW + 20), *_at(NOW + 60))
    assert [r.status for r in responses].count(429) == 1
    assert responses[60].status == 429 and responses[60].headers["Retry-After"] == "40"
    assert responses[61].status == 202


# ---- odd unicode in emails ----

NFC = unicodedata.normalize("NFC", "josé.müller@exämple.de")
NFD = unicodedata.normalize("NFD", NFC)


def test_a_unicode_email_is_kept_verbatim_and_deleted_by_the_same_string() -> None:
    unsubscribe = server(UNSUBSCRIBE, unsubscription_body([unsubscriber(email=NFC)]))
    _, kept = exchange(unsubscribe)
    assert kept["unsubscriptions"][0]["email"] == NFC and list(kept["profiles"]) == [NFC]
    _, state = exchange(unsubscribe, _delete(email=NFC))
    assert state["profiles"] == {} and state["unsubscriptions"] == []


def test_an_escaped_and_a_raw_utf8_email_name_the_same_profile() -> None:
    escaped = _delete(email=NFC)
    escaped.body = (
        _body(escaped).decode().replace("é", "\\u00e9").replace("ü", "\\u00fc").replace("ä", "\\u00e4").encode()
    )
    assert b"\\u00e9" in escaped.body and "é".encode() not in escaped.body
    _, state = exchange(server("/api/events", event_body(profile={"email": NFC})), escaped)
    assert state["profiles"] == {} and state["deletions"][0]["identifier"] == {"email": NFC}


def test_emails_are_not_unicode_normalised_so_nfd_does_not_match_an_nfc_profile() -> None:
    # [assumption] Klaviyo's normalisation is unpublished; the emulator matches exactly, so a
    # client that changes an address's normal form is caught deleting nothing.
    assert NFC != NFD
    _, state = exchange(server("/api/events", event_body(profile={"email": NFC})), _delete(email=NFD))
    assert list(state["profiles"]) == [NFC]
    assert state["deletions"][0]["profile_ids"] == []


@pytest.mark.parametrize("space", ["\u00a0", "\u2003", "\u3000"], ids=["no-break", "em", "ideographic"])
def test_an_email_containing_unicode_whitespace_is_400(space: str) -> None:
    bad = f"jane{space}doe@example.com"
    for req in (_delete(email=bad), server(UNSUBSCRIBE, unsubscription_body([unsubscriber(email=bad)]))):
        resp, state = one(req)
        pointer = (
            f"{ATTRS}/email" if req.path == DELETE_PROFILE else "/data/attributes/profiles/data/0/attributes/email"
        )
        assert_error(resp, 400, pointer=pointer)
        assert state["deletions"] == [] and state["unsubscriptions"] == []


def test_an_email_with_a_lone_surrogate_escape_is_an_invalid_payload() -> None:
    req = _delete(email="jane@example.com")
    req.body = _body(req).replace(b"jane@", b"jane\\ud800@")
    resp, state = one(req)
    assert_error(resp, 400, pointer="/data", detail="The payload provided in the request is invalid.")
    assert state["deletions"] == []


def test_an_email_that_is_not_utf8_is_an_invalid_payload() -> None:
    req = server(UNSUBSCRIBE, unsubscription_body([unsubscriber(email="jose@example.com")]))
    req.body = _body(req).replace(b"jose@", b"jos\xe9@")  # Latin-1 é
    resp, state = one(req)
    assert_error(resp, 400, pointer="/data", detail="The payload provided in the request is invalid.")
    assert state["unsubscriptions"] == []
