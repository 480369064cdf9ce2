"""Klaviyo's official Python SDK (``klaviyo-api``) against the emulator: the two must agree.

Every well-formed call the SDK makes for the endpoints we use must pass, and every invalid call
the SDK lets through must be refused with Klaviyo's error shape. The SDK is synchronous
(urllib3): each call runs in a worker thread while the emulator serves on loopback. Its client
(public key) endpoints were dropped from the SDK, so those calls go through the SDK's own
``ApiClient`` (serialization and transport) with ``company_id`` in the query.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import pytest
from klaviyo_api import KlaviyoAPI
from openapi_client.exceptions import ApiException
from openapi_client.models.data_privacy_create_deletion_job_query import DataPrivacyCreateDeletionJobQuery
from openapi_client.models.event_create_query_v2 import EventCreateQueryV2
from openapi_client.models.events_bulk_create_job import EventsBulkCreateJob
from openapi_client.models.events_bulk_create_query_resource_object import EventsBulkCreateQueryResourceObject
from openapi_client.models.get_accounts4_xx_response import GetAccounts4XXResponse
from openapi_client.models.onsite_profile_create_query_resource_object import OnsiteProfileCreateQueryResourceObject
from openapi_client.models.profile_subscription_create_query_resource_object import (
    ProfileSubscriptionCreateQueryResourceObject,
)
from openapi_client.models.profile_upsert_query import ProfileUpsertQuery
from openapi_client.models.subscription_channels import SubscriptionChannels
from openapi_client.models.subscription_create_job_create_query import SubscriptionCreateJobCreateQuery
from openapi_client.models.subscription_delete_job_create_query import SubscriptionDeleteJobCreateQuery

from mparticle_klaviyo.klaviyo.emulator import RunningEmulator

from .helpers import COMPANY, JSON_API, KEY, LIST, Req, Resp, assert_error, config, run, send

T = TypeVar("T")
SDK_REVISION = "2026-10-15"
NAIVE_TIME = datetime(2026, 11, 30, 12, 0, 0)  # sent as 2026-11-30T12:00:00, no offset
EMAIL = {"email": "jane@example.com"}


# ---- running SDK calls against an emulator ----


def _sdk(url: str, **auth: str) -> Any:
    """A KlaviyoAPI client aimed at the emulator, without retry sleeps."""
    auth = auth or {"api_key": KEY}
    return KlaviyoAPI(**{"api_key": None, **auth}, test_host=url, max_retries=1, max_delay=1)


def against_emulator(calls: Callable[[Any], T], **auth: str) -> tuple[T, dict[str, Any]]:
    """Run ``calls(sdk)`` in a thread against a fresh emulator; return its result and the state."""
    cfg = config()

    async def scenario(running: RunningEmulator, session: aiohttp.ClientSession) -> tuple[T, dict[str, Any]]:
        result = await asyncio.to_thread(calls, _sdk(running.url, **auth))
        state = await send(session, running.url, Req("GET", "/_emulator/state"), cfg)
        return result, state.json()

    return run(scenario, cfg)


def refused(call: Callable[[Any], object], **auth: str) -> tuple[Resp, dict[str, Any]]:
    """Run a call the SDK sends but the emulator must refuse; return the error response.

    The SDK parses every 4xx body with its own error model; that must work too.
    """

    def expect_error(sdk: Any) -> Resp:
        with pytest.raises(ApiException) as caught:
            call(sdk)
        error = caught.value
        assert isinstance(error.data, GetAccounts4XXResponse), error.body
        headers = {str(k): str(v) for k, v in (error.headers or {}).items()}
        return Resp(int(error.status or 0), headers, (error.body or "").encode())

    return against_emulator(expect_error, **auth)


def sdk_post(sdk: Any, path: str, body: object, *, company: str | None = None) -> int:
    """POST ``body`` with the SDK's own ApiClient (for endpoints the SDK has no method for)."""
    api = sdk.api_client
    query = [("company_id", company)] if company is not None else []
    auth = [] if company is not None else ["Klaviyo-API-Key"]
    headers = {"Accept": JSON_API, "Content-Type": JSON_API}
    request = api.param_serialize(
        "POST", path, query_params=query, header_params=headers, body=body, auth_settings=auth
    )
    response = api.call_api(*request)
    response.read()
    types = {"202": None, "4XX": "GetAccounts4XXResponse"}
    status: int = api.response_deserialize(response, types).status_code
    return status


# ---- bodies, built with the SDK's models ----


def _metric(name: str = "Ordered Product") -> dict[str, Any]:
    return {"data": {"type": "metric", "attributes": {"name": name}}}


def _event_attrs(time: object = NAIVE_TIME, **overrides: Any) -> dict[str, Any]:
    attrs = {
        "properties": {"Brand": "Kids Book", "Categories": ["Fiction"]},
        "time": time,
        "value": 9.99,
        "value_currency": "USD",
        "unique_id": "evt-1",
        "metric": _metric(),
    }
    return {**attrs, **overrides}


def event_query(profile: dict[str, Any] | None = None, **overrides: Any) -> EventCreateQueryV2:
    """One event (``create_event`` and ``/client/events``), by default at a naive time."""
    attrs = _event_attrs(**overrides)
    attrs["profile"] = {"data": {"type": "profile", "attributes": EMAIL if profile is None else profile}}
    return EventCreateQueryV2.model_validate({"data": {"type": "event", "attributes": attrs}})


def bulk_job(*unique_ids: str, profile: dict[str, Any] | None = None) -> EventsBulkCreateJob:
    """``bulk_create_events``: one profile with one event per unique id."""
    events = [{"type": "event", "attributes": _event_attrs(unique_id=uid)} for uid in unique_ids]
    entry = {
        "type": "event-bulk-create",
        "attributes": {
            "profile": {"data": {"type": "profile", "attributes": profile or EMAIL}},
            "events": {"data": events},
        },
    }
    job = {"data": {"type": "event-bulk-create-job", "attributes": {"events-bulk-create": {"data": [entry]}}}}
    return EventsBulkCreateJob.model_validate(job)


MARKETING = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}
CLICK_TRACKING = {"email": {"marketing": {"consent": "SUBSCRIBED"}, "click_tracking": {"consent": "SUBSCRIBED"}}}


def subscriber(subscriptions: dict[str, Any] = MARKETING, **attrs: Any) -> ProfileSubscriptionCreateQueryResourceObject:
    """One profile of a subscription, as the SDK models it."""
    data = {"type": "profile", "attributes": {**(attrs or EMAIL), "subscriptions": subscriptions}}
    return ProfileSubscriptionCreateQueryResourceObject.model_validate(data)


def subscribe_job(*profiles: ProfileSubscriptionCreateQueryResourceObject, historical: bool | None = None) -> Any:
    """``bulk_subscribe_profiles`` for ``profiles`` into the configured list."""
    attrs: dict[str, Any] = {"custom_source": "mParticle consent sync", "profiles": {"data": list(profiles)}}
    if historical is not None:
        attrs["historical_import"] = historical
    relationships = {"list": {"data": {"type": "list", "id": LIST}}}
    data = {"type": "profile-subscription-bulk-create-job", "attributes": attrs, "relationships": relationships}
    return SubscriptionCreateJobCreateQuery.model_validate({"data": data})


def client_subscription(subscriptions: dict[str, Any] = MARKETING) -> dict[str, Any]:
    """A ``/client/subscriptions`` body around the SDK's model of the subscription channels."""
    channels = SubscriptionChannels.model_validate(subscriptions)
    profile = {"type": "profile", "attributes": {**EMAIL, "subscriptions": channels}}
    return {
        "data": {
            "type": "subscription",
            "attributes": {"custom_source": "mParticle consent sync", "profile": {"data": profile}},
            "relationships": {"list": {"data": {"type": "list", "id": LIST}}},
        }
    }


def profile_upsert(**attrs: Any) -> ProfileUpsertQuery:
    """``create_or_update_profile`` for one profile."""
    return ProfileUpsertQuery.model_validate({"data": {"type": "profile", "attributes": attrs or EMAIL}})


# ---- every well-formed call the SDK makes for our endpoints passes ----


def test_the_sdk_sends_its_own_revision() -> None:
    sdk = _sdk("http://127.0.0.1:9")
    assert sdk.api_client.default_headers["revision"] == SDK_REVISION


def test_sdk_create_event_with_a_naive_time_is_recorded_as_utc() -> None:
    result, state = against_emulator(lambda sdk: sdk.Events.create_event(event_query()))
    assert result is None
    [event] = state["events"]
    assert event["time"] == "2026-11-30T12:00:00+00:00"
    assert event["endpoint"] == "POST /api/events"


def test_sdk_create_event_from_dict_with_its_explicit_nulls_is_recorded() -> None:
    attrs = {**_event_attrs(), "profile": {"data": {"type": "profile", "attributes": EMAIL}}}
    query = EventCreateQueryV2.from_dict({"data": {"type": "event", "attributes": attrs}})
    _, state = against_emulator(lambda sdk: sdk.Events.create_event(query))
    assert state["events"][0]["service"] is None


def test_sdk_create_event_with_an_aware_time_is_recorded() -> None:
    moment = datetime(2026, 5, 1, 12, 34, 56, 789000, tzinfo=UTC)
    _, state = against_emulator(lambda sdk: sdk.Events.create_event(event_query(time=moment)))
    assert state["events"][0]["time"] == "2026-05-01T12:34:56+00:00"


def test_sdk_bulk_create_events_records_every_event() -> None:
    _, state = against_emulator(lambda sdk: sdk.Events.bulk_create_events(bulk_job("e1", "e2", "e3")))
    assert [e["unique_id"] for e in state["events"]] == ["e1", "e2", "e3"]


def test_sdk_bulk_subscribe_profiles_records_the_consent() -> None:
    job = subscribe_job(subscriber(), subscriber(email="joe@example.com"))
    _, state = against_emulator(lambda sdk: sdk.Profiles.bulk_subscribe_profiles(job))
    assert [s["email"] for s in state["subscriptions"]] == ["jane@example.com", "joe@example.com"]
    assert state["subscriptions"][0]["list_id"] == LIST


def test_sdk_bulk_subscribe_with_click_tracking_is_accepted_at_the_sdks_revision() -> None:
    job = subscribe_job(subscriber(CLICK_TRACKING))
    _, state = against_emulator(lambda sdk: sdk.Profiles.bulk_subscribe_profiles(job))
    assert state["subscriptions"][0]["channels"] == ["email.marketing", "email.click_tracking"]


def test_sdk_historical_import_with_naive_consent_times_is_accepted() -> None:
    channels = {"email": {"marketing": {"consent": "SUBSCRIBED", "consented_at": datetime(2026, 4, 30, 9)}}}
    job = subscribe_job(subscriber(channels), historical=True)
    _, state = against_emulator(lambda sdk: sdk.Profiles.bulk_subscribe_profiles(job))
    assert state["subscriptions"][0]["historical_import"] is True


def test_sdk_create_or_update_profile_creates_then_updates() -> None:
    def calls(sdk: Any) -> tuple[Any, Any]:
        first = sdk.Profiles.create_or_update_profile(profile_upsert(email="jane@example.com", first_name="Jane"))
        again = sdk.Profiles.create_or_update_profile(profile_upsert(email="jane@example.com", last_name="Doe"))
        return first, again

    (first, again), state = against_emulator(calls)
    assert first.data.id == again.data.id
    assert again.data.attributes.first_name == "Jane" and again.data.attributes.last_name == "Doe"
    assert state["profiles"]["jane@example.com"]["attributes"] == {"first_name": "Jane", "last_name": "Doe"}


def test_sdk_client_create_event_is_recorded() -> None:
    status, state = against_emulator(lambda sdk: sdk_post(sdk, "/client/events", event_query(), company=COMPANY))
    assert status == 202
    assert state["events"][0]["endpoint"] == "POST /client/events"
    assert state["events"][0]["time"] == "2026-11-30T12:00:00+00:00"


def test_sdk_client_bulk_create_and_client_profile_are_recorded() -> None:
    entry = bulk_job("e1", "e2").data.attributes.events_bulk_create.data[0]
    bulk = {"data": EventsBulkCreateQueryResourceObject.model_validate(entry.to_dict())}
    meta = {"patch_properties": {"append": {"skus": "92538"}}}
    profile_data = {"type": "profile", "attributes": {**EMAIL, "first_name": "Jane"}, "meta": meta}
    profile = {"data": OnsiteProfileCreateQueryResourceObject.model_validate(profile_data)}

    def calls(sdk: Any) -> list[int]:
        return [
            sdk_post(sdk, "/client/event-bulk-create", bulk, company=COMPANY),
            sdk_post(sdk, "/client/profiles", profile, company=COMPANY),
        ]

    statuses, state = against_emulator(calls)
    assert statuses == [202, 202]
    assert [e["unique_id"] for e in state["events"]] == ["e1", "e2"]
    assert state["profiles"]["jane@example.com"]["attributes"] == {"first_name": "Jane"}


def test_sdk_client_subscription_is_recorded() -> None:
    body = client_subscription()
    status, state = against_emulator(lambda sdk: sdk_post(sdk, "/client/subscriptions", body, company=COMPANY))
    assert status == 202
    assert state["subscriptions"][0]["channels"] == ["email.marketing"]


def test_sdk_client_subscription_with_click_tracking_is_accepted_at_the_sdks_revision() -> None:
    body = client_subscription(CLICK_TRACKING)
    status, state = against_emulator(lambda sdk: sdk_post(sdk, "/client/subscriptions", body, company=COMPANY))
    assert status == 202
    assert state["subscriptions"][0]["channels"] == ["email.marketing", "email.click_tracking"]


def _older_sdk(revision: str) -> Callable[[Any], list[object]]:
    """The calls of an SDK pinned to ``revision``: bodies without the fields it did not know."""

    def event(sdk: Any, unique_id: str) -> dict[str, Any]:
        body: dict[str, Any] = sdk.api_client.sanitize_for_serialization(event_query(unique_id=unique_id))
        del body["data"]["attributes"]["backfill"]  # `backfill` arrived in revision 2026-04-15
        return body

    def calls(sdk: Any) -> list[object]:
        sdk.api_client.default_headers["revision"] = revision
        return [
            sdk_post(sdk, "/api/events", event(sdk, "server-1")),
            sdk_post(sdk, "/client/events", event(sdk, "client-1"), company=COMPANY),
            sdk.Profiles.bulk_subscribe_profiles(subscribe_job(subscriber())),
            sdk.Profiles.create_or_update_profile(profile_upsert()).data.type,
        ]

    return calls


@pytest.mark.parametrize("revision", ["2025-07-15", "2026-01-15"])
def test_an_older_sdks_revision_is_served(revision: str) -> None:
    results, state = against_emulator(_older_sdk(revision))
    assert results == [202, 202, None, "profile"]
    assert [e["unique_id"] for e in state["events"]] == ["server-1", "client-1"]
    assert len(state["subscriptions"]) == 1


def test_the_sdks_event_at_an_older_revision_is_refused_for_its_backfill_field() -> None:
    def call(sdk: Any) -> object:
        sdk.api_client.default_headers["revision"] = "2026-01-15"
        return sdk.Events.create_event(event_query())

    resp, _ = refused(call)
    assert_error(resp, 400, pointer="/data/attributes/backfill")


# ---- invalid calls the SDK lets through are refused with Klaviyo's error shape ----


def test_a_phone_number_that_is_not_a_real_number_is_refused() -> None:
    resp, state = refused(lambda sdk: sdk.Events.create_event(event_query({"phone_number": "+10000000000"})))
    assert_error(resp, 400, pointer="/data/attributes/profile/data/attributes/phone_number")
    assert state["events"] == []


def test_a_fake_phone_beside_an_email_is_ignored_with_a_partial_failure() -> None:
    profile = {"email": "jane@example.com", "phone_number": "+10000000000"}
    _, state = against_emulator(lambda sdk: sdk.Events.create_event(event_query(profile)))
    assert state["partial_failures"] == 1
    assert state["events"][0]["profile"] == {"email": "jane@example.com"}


def test_a_private_key_sent_as_a_bearer_token_is_401() -> None:
    resp, state = refused(lambda sdk: sdk.Events.create_event(event_query()), access_token=KEY)
    assert_error(resp, 401, "authentication_failed", parameter="Authorization")
    assert state["events"] == []


@pytest.mark.parametrize(
    ("overrides", "pointer"),
    [
        ({"metric": _metric("x" * 300)}, "/data/attributes/metric/data/attributes/name"),
        ({"value_currency": "usd"}, "/data/attributes/value_currency"),
        ({"time": datetime(1985, 1, 1)}, "/data/attributes/time"),
        ({"time": datetime(2028, 1, 1)}, "/data/attributes/time"),
        ({"properties": {f"p{i}": i for i in range(401)}}, "/data/attributes/properties"),
    ],
    ids=["long metric name", "lower-case currency", "before 1990", "over a year ahead", "401 properties"],
)
def test_event_values_the_sdk_lets_through_are_refused(overrides: dict[str, Any], pointer: str) -> None:
    resp, _ = refused(lambda sdk: sdk.Events.create_event(event_query(**overrides)))
    assert_error(resp, 400, pointer=pointer)


@pytest.mark.parametrize(
    ("profile", "pointer"),
    [
        ({}, "/data/attributes/profile/data"),
        ({"email": "jane@"}, "/data/attributes/profile/data/attributes/email"),
        ({"phone_number": "555-0100"}, "/data/attributes/profile/data/attributes/phone_number"),
    ],
    ids=["no identifier", "bad email", "not e164"],
)
def test_profiles_the_sdk_lets_through_are_refused(profile: dict[str, Any], pointer: str) -> None:
    resp, _ = refused(lambda sdk: sdk.Events.create_event(event_query(profile)))
    assert_error(resp, 400, pointer=pointer)


def test_a_bulk_job_repeating_a_unique_id_is_refused_whole() -> None:
    resp, state = refused(lambda sdk: sdk.Events.bulk_create_events(bulk_job("e1", "e1")))
    assert_error(
        resp, 400, pointer="/data/attributes/events-bulk-create/data/0/attributes/events/data/1/attributes/unique_id"
    )
    assert state["events"] == []


def test_a_consent_time_without_historical_import_is_refused() -> None:
    channels = {"email": {"marketing": {"consent": "SUBSCRIBED", "consented_at": datetime(2026, 4, 30, 9)}}}
    resp, state = refused(lambda sdk: sdk.Profiles.bulk_subscribe_profiles(subscribe_job(subscriber(channels))))
    pointer = "/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consented_at"
    assert_error(resp, 400, pointer=pointer)
    assert state["subscriptions"] == []


def test_click_tracking_before_its_revision_is_an_unknown_field() -> None:
    def call(sdk: Any) -> object:
        sdk.api_client.default_headers["revision"] = "2026-07-15"
        return sdk.Profiles.bulk_subscribe_profiles(subscribe_job(subscriber(CLICK_TRACKING)))

    resp, _ = refused(call)
    pointer = "/data/attributes/profiles/data/0/attributes/subscriptions/email/click_tracking"
    error = assert_error(resp, 400, pointer=pointer)
    assert error["detail"].startswith("'click_tracking' is not a valid field")


# ---- unsubscribe and profile deletion through the SDK ----

REVOKE_EMAIL = {"email": {"marketing": {"consent": "UNSUBSCRIBED"}, "click_tracking": {"consent": "UNSUBSCRIBED"}}}


def unsubscribe_job(subscriptions: dict[str, Any] = REVOKE_EMAIL, **attrs: Any) -> SubscriptionDeleteJobCreateQuery:
    """``bulk_unsubscribe_profiles`` for one profile, from the configured list."""
    profile = {"type": "profile", "attributes": {**(attrs or EMAIL), "subscriptions": subscriptions}}
    data = {
        "type": "profile-subscription-bulk-delete-job",
        "attributes": {"profiles": {"data": [profile]}},
        "relationships": {"list": {"data": {"type": "list", "id": LIST}}},
    }
    return SubscriptionDeleteJobCreateQuery.model_validate({"data": data})


def deletion_job(profile: dict[str, Any]) -> DataPrivacyCreateDeletionJobQuery:
    """``request_profile_deletion``, built with ``from_dict`` (which sends the unset identifiers as null)."""
    data = {"type": "data-privacy-deletion-job", "attributes": {"profile": {"data": {"type": "profile", **profile}}}}
    job = DataPrivacyCreateDeletionJobQuery.from_dict({"data": data})
    assert job is not None
    return job


def test_sdk_subscribe_then_unsubscribe_leaves_the_profile_unsubscribed() -> None:
    def calls(sdk: Any) -> None:
        sdk.Profiles.bulk_subscribe_profiles(subscribe_job(subscriber()))
        sdk.Profiles.bulk_unsubscribe_profiles(unsubscribe_job())

    _, state = against_emulator(calls)
    assert state["unsubscriptions"][0]["channels"] == ["email.marketing", "email.click_tracking"]
    profile = state["profiles"]["jane@example.com"]
    assert profile["consent"] == {"email.marketing": "UNSUBSCRIBED", "email.click_tracking": "UNSUBSCRIBED"}
    assert profile["lists"] == []


def test_sdk_request_profile_deletion_by_id_with_null_attributes_deletes_the_profile() -> None:
    def calls(sdk: Any) -> str:
        sdk.Events.create_event(event_query())
        profile_id: str = sdk.Profiles.create_or_update_profile(profile_upsert()).data.id
        sdk.Data_Privacy.request_profile_deletion(deletion_job({"id": profile_id, "attributes": {}}))
        return profile_id

    profile_id, state = against_emulator(calls)
    assert state["profiles"] == {} and state["events"] == []
    assert state["deletions"][0]["profile_ids"] == [profile_id]


def test_sdk_request_profile_deletion_with_two_identifiers_is_refused() -> None:
    job = deletion_job({"attributes": {"email": "jane@example.com", "phone_number": "+15005550006"}})
    resp, state = refused(lambda sdk: sdk.Data_Privacy.request_profile_deletion(job))
    assert_error(resp, 400, pointer="/data/attributes/profile/data")
    assert state["deletions"] == []


def test_sdk_unsubscribe_of_101_profiles_is_refused() -> None:
    job = unsubscribe_job()
    job.data.attributes.profiles.data *= 101
    resp, state = refused(lambda sdk: sdk.Profiles.bulk_unsubscribe_profiles(job))
    assert_error(resp, 400, pointer="/data/attributes/profiles/data")
    assert state["unsubscriptions"] == []
