"""The revision table: each revision's body features and limits, and when endpoints appeared.

Every feature is accepted from the revision that adds it and is an unknown field before (or
after the revision that drops it). At 2026-07-15 the declared keys, required keys and null
rules of every body agree with Klaviyo's official spec in ../shared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mparticle_klaviyo.klaviyo.emulator.revisions import (
    FIRST_SERVED,
    KNOWN_REVISIONS,
    REVISIONS,
    WHATSAPP,
    rules_at,
)
from mparticle_klaviyo.klaviyo.emulator.schema import AnyOf, Arr, Node, Obj
from mparticle_klaviyo.klaviyo.emulator.schemas import bodies

from .helpers import (
    Req,
    assert_error,
    bulk_entry,
    bulk_event,
    bulk_subscription_body,
    client,
    client_bulk_body,
    event_body,
    import_body,
    one,
    profile_body,
    server,
    server_bulk_body,
    subscriber,
    subscription_body,
    unsubscriber,
    unsubscription_body,
    with_value,
)

SUBSCRIBED = {"consent": "SUBSCRIBED"}
REVOKED = {"consent": "UNSUBSCRIBED"}
MARKETING = {"marketing": SUBSCRIBED}
SUBS_ATTRS = "/data/attributes/profile/data/attributes"
BULK_ATTRS = "/data/attributes/profiles/data/0/attributes"


def test_the_table_is_in_order_and_drops_only_what_it_added() -> None:
    dates = [row.date for row in REVISIONS]
    assert dates == sorted(set(dates))
    added: set[str] = set()
    for row in REVISIONS:
        assert set(row.drops) <= added, row
        added.update(row.adds)
    assert frozenset(dates) == KNOWN_REVISIONS


def test_features_accumulate_and_older_dates_get_the_first_row() -> None:
    assert WHATSAPP not in rules_at("2025-04-15").features
    assert WHATSAPP in rules_at("2025-07-15").features
    assert WHATSAPP in rules_at("2025-08-01").features  # between rows: the row before
    assert rules_at("2023-07-15") == rules_at(REVISIONS[0].date)


def test_every_emulated_endpoint_has_a_first_revision() -> None:
    assert set(FIRST_SERVED) == set(bodies(frozenset()))
    assert all(date < REVISIONS[0].date for date in FIRST_SERVED.values())


def _client_sub(channels: dict[str, Any], **profile: Any) -> Req:
    return client("/client/subscriptions", subscription_body(channels, **profile))


def _bulk_sub(channels: dict[str, Any]) -> Req:
    return server("/api/profile-subscription-bulk-create-jobs", bulk_subscription_body([subscriber(channels)]))


def _unsub(channels: dict[str, Any]) -> Req:
    profile = unsubscriber(channels, email="jane@example.com", phone_number="+15005550006")
    return server("/api/profile-subscription-bulk-delete-jobs", unsubscription_body([profile]))


def _patch_identifiers() -> Req:
    body = profile_body(email="jane@example.com")
    body["data"]["meta"] = {"patch_identifiers": {"append": {"email": ["j@example.com"]}}}
    return client("/client/profiles", body)


def _bulk_backfill() -> Req:
    return client(
        "/client/event-bulk-create", with_value(client_bulk_body([bulk_event("e1")]), "data/attributes/backfill", True)
    )


# (request, pointer of the feature's key, first revision with it, revision just before)
ADDED: dict[str, tuple[Req, str, str, str]] = {
    "click_tracking (client)": (
        _client_sub({"email": {**MARKETING, "click_tracking": SUBSCRIBED}}),
        f"{SUBS_ATTRS}/subscriptions/email/click_tracking",
        "2026-10-15",
        "2026-07-15",
    ),
    "click_tracking (bulk)": (
        _bulk_sub({"email": {**MARKETING, "click_tracking": SUBSCRIBED}}),
        f"{BULK_ATTRS}/subscriptions/email/click_tracking",
        "2026-10-15",
        "2026-07-15",
    ),
    "open_tracking": (
        _client_sub({"email": {**MARKETING, "open_tracking": SUBSCRIBED}}),
        f"{SUBS_ATTRS}/subscriptions/email/open_tracking",
        "2026-04-15",
        "2026-01-15",
    ),
    "push": (
        _bulk_sub({"email": MARKETING, "push": MARKETING}),
        f"{BULK_ATTRS}/subscriptions/push",
        "2026-01-15",
        "2025-10-15",
    ),
    "whatsapp": (
        _client_sub({"whatsapp": MARKETING}, email="jane@example.com", phone_number="+15005550006"),
        f"{SUBS_ATTRS}/subscriptions/whatsapp",
        "2025-07-15",
        "2025-04-15",
    ),
    "backfill (event)": (
        client("/client/events", event_body(backfill=True)),
        "/data/attributes/backfill",
        "2026-04-15",
        "2026-01-15",
    ),
    "backfill (bulk entry)": (_bulk_backfill(), "/data/attributes/backfill", "2026-04-15", "2026-01-15"),
    "patch_identifiers": (_patch_identifiers(), "/data/meta/patch_identifiers", "2026-04-15", "2026-01-15"),
    "click_tracking (unsubscribe)": (
        _unsub({"email": {"click_tracking": REVOKED}}),
        f"{BULK_ATTRS}/subscriptions/email/click_tracking",
        "2026-10-15",
        "2026-07-15",
    ),
    "open_tracking (unsubscribe)": (
        _unsub({"email": {"open_tracking": REVOKED}}),
        f"{BULK_ATTRS}/subscriptions/email/open_tracking",
        "2026-04-15",
        "2026-01-15",
    ),
    "push (unsubscribe)": (
        _unsub({"push": {"marketing": REVOKED, "tokens": []}}),
        f"{BULK_ATTRS}/subscriptions/push",
        "2026-01-15",
        "2025-10-15",
    ),
    "whatsapp (unsubscribe)": (
        _unsub({"whatsapp": {"conversational": REVOKED}}),
        f"{BULK_ATTRS}/subscriptions/whatsapp",
        "2025-07-15",
        "2025-04-15",
    ),
}


@pytest.mark.parametrize(("req", "pointer", "first", "before"), ADDED.values(), ids=list(ADDED))
def test_a_feature_is_accepted_from_its_revision_and_unknown_before(
    req: Req, pointer: str, first: str, before: str
) -> None:
    req.headers["revision"] = first
    resp, _ = one(req)
    assert resp.status in (200, 201, 202), resp.body[:300]
    req.headers["revision"] = before
    error = assert_error(one(req)[0], 400, pointer=pointer)
    assert "is not a valid field for the resource" in error["detail"]


DROPPED: dict[str, tuple[Req, str]] = {
    "anonymous_id (client subscription)": (
        _client_sub({"email": MARKETING}, email="jane@example.com", anonymous_id="anon-1"),
        f"{SUBS_ATTRS}/anonymous_id",
    ),
    "anonymous_id (profile import)": (
        server("/api/profile-import", import_body(email="jane@example.com", anonymous_id="anon-1")),
        "/data/attributes/anonymous_id",
    ),
}


@pytest.mark.parametrize(("req", "pointer"), DROPPED.values(), ids=list(DROPPED))
def test_anonymous_id_left_subscription_and_import_profiles_in_2025_10_15(req: Req, pointer: str) -> None:
    req.headers["revision"] = "2025-07-15"
    assert one(req)[0].status in (201, 202)
    req.headers["revision"] = "2025-10-15"
    assert_error(one(req)[0], 400, pointer=pointer)


def test_anonymous_id_stays_on_event_profiles() -> None:
    resp, _ = one(client("/client/events", event_body(profile={"anonymous_id": "anon-1"}), revision="2026-10-15"))
    assert resp.status == 202


def test_email_marketing_was_required_until_open_tracking_arrived() -> None:
    req = _client_sub({"email": {"open_tracking": SUBSCRIBED}})
    req.headers["revision"] = "2026-04-15"
    assert one(req)[0].status == 202
    req = _client_sub({"email": {}})
    req.headers["revision"] = "2026-01-15"
    assert_error(one(req)[0], 400, pointer=f"{SUBS_ATTRS}/subscriptions/email/marketing")


def test_revoking_email_marketing_was_required_until_open_tracking_arrived() -> None:
    req = _unsub({"email": {"open_tracking": REVOKED}})
    req.headers["revision"] = "2026-04-15"
    assert one(req)[0].status == 202
    req = _unsub({"email": {}, "sms": {"marketing": REVOKED}})
    req.headers["revision"] = "2026-01-15"
    assert_error(one(req)[0], 400, pointer=f"{BULK_ATTRS}/subscriptions/email/marketing")


def test_revoking_whatsapp_conversational_is_unknown_on_subscribe() -> None:
    resp, _ = one(_bulk_sub({"whatsapp": {"conversational": SUBSCRIBED}}))
    assert_error(resp, 400, pointer=f"{BULK_ATTRS}/subscriptions/whatsapp/conversational")


@pytest.mark.parametrize(("revision", "status"), [("2025-01-15", 400), ("2025-04-15", 202)])
def test_the_event_property_limit_rose_from_300_to_400_in_2025_04_15(revision: str, status: int) -> None:
    body = event_body(properties={f"p{i}": i for i in range(301)})
    resp, _ = one(client("/client/events", body, revision=revision))
    assert resp.status == status


@pytest.mark.parametrize(("revision", "status"), [("2026-04-15", 400), ("2026-07-15", 202)])
def test_event_times_may_start_in_1990_from_2026_07_15(revision: str, status: int) -> None:
    resp, _ = one(client("/client/events", event_body(time="1995-06-01T00:00:00Z"), revision=revision))
    assert resp.status == status


def test_the_server_bulk_job_judges_each_entry_at_the_revision_sent() -> None:
    body = server_bulk_body(bulk_entry({"email": "jane@example.com"}, [bulk_event("e1", backfill=True)]))
    resp, _ = one(server("/api/event-bulk-create-jobs", body, revision="2026-01-15"))
    assert_error(
        resp, 400, pointer="/data/attributes/events-bulk-create/data/0/attributes/events/data/0/attributes/backfill"
    )


# ---- agreement with Klaviyo's spec at 2026-07-15 ----

# Deliberately stricter than the spec: the list a subscription names must be given (rule 21).
STRICTER = {"/data/relationships/list/data"}


def _spec_fields(spec: dict[str, Any], schema: dict[str, Any], prefix: str, out: dict[str, tuple[bool, bool]]) -> None:
    """Every declared key below ``schema``: its pointer-like path → (required, nullable)."""
    schema, _ = _resolve(spec, schema)
    if schema.get("type") == "array":
        _spec_fields(spec, schema["items"], prefix + "[]", out)
    required = set(schema.get("required", ()))
    for key, sub in schema.get("properties", {}).items():
        _, nullable = _resolve(spec, sub)
        out[f"{prefix}/{key}"] = (key in required, nullable)
        _spec_fields(spec, sub, f"{prefix}/{key}", out)


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    nullable = bool(schema.get("nullable"))
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        nullable = nullable or bool(schema.get("nullable"))
    return schema, nullable


def _emulator_fields(node: Node, prefix: str, out: dict[str, tuple[bool, bool]]) -> None:
    if isinstance(node, Arr):
        _emulator_fields(node.item, prefix + "[]", out)
    elif isinstance(node, AnyOf):
        for option in node.options:
            _emulator_fields(option, prefix, out)
    elif isinstance(node, Obj):
        for key, child in node.fields.items():
            out[f"{prefix}/{key}"] = (key in node.required, child.nullable)
            _emulator_fields(child, f"{prefix}/{key}", out)


# Free-form objects whose examples the spec spells out; the emulator accepts any key there.
FREE_FORM = ("/patch_identifiers/append/", "/patch_identifiers/unappend/", "/device_metadata/")


@pytest.mark.parametrize("path", sorted(FIRST_SERVED))
def test_at_2026_07_15_every_body_declares_what_the_spec_declares(openapi_spec_path: Path, path: str) -> None:
    spec = json.loads(openapi_spec_path.read_text())
    media = spec["paths"][path]["post"]["requestBody"]["content"]["application/vnd.api+json"]
    wanted: dict[str, tuple[bool, bool]] = {}
    _spec_fields(spec, media["schema"], "", wanted)
    wanted = {key: value for key, value in wanted.items() if not any(part in key for part in FREE_FORM)}
    have: dict[str, tuple[bool, bool]] = {}
    _emulator_fields(bodies(rules_at("2026-07-15").features)[path], "", have)
    for key in STRICTER & have.keys():
        have[key] = (False, have[key][1])
    assert len(wanted) >= 10  # the walk reached nested members (the deletion job has exactly 10)
    assert have == wanted
