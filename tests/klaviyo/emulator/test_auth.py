"""Rules 6-7: client auth by company_id, server auth by private key, scopes, violations."""

from __future__ import annotations

import pytest

from mparticle_klaviyo.klaviyo.emulator import EmulatorConfig

from .helpers import KEY, assert_error, client, config, event_body, one, server


def test_a_client_request_without_company_id_is_400_naming_the_parameter() -> None:
    resp, state = one(client("/client/events", event_body(), company=None))
    assert_error(resp, 400, parameter="company_id")
    assert state["events"] == []


def test_an_empty_company_id_is_400() -> None:
    resp, _ = one(client("/client/events", event_body(), company=""))
    assert_error(resp, 400, parameter="company_id")


def test_an_unknown_company_id_is_400_by_default_and_records_nothing() -> None:
    resp, state = one(client("/client/events", event_body(), company="NOPE99"))
    assert_error(resp, 400, parameter="company_id")
    assert state["events"] == [] and state["profiles"] == {}


def test_an_unknown_company_can_be_answered_202_while_recording_nothing() -> None:
    resp, state = one(client("/client/events", event_body(), company="NOPE99"), config(unknown_company_status=202))
    assert resp.status == 202
    assert state["events"] == [] and state["profiles"] == {}
    assert state["violations"][0]["reason"] == "unknown company_id"


def test_an_unknown_company_is_answered_with_exactly_the_configured_status() -> None:
    resp, state = one(client("/client/events", event_body(), company="NOPE99"), config(unknown_company_status=200))
    assert resp.status == 200
    assert state["events"] == []


def test_an_unknown_company_answered_202_still_has_its_body_validated() -> None:
    body = event_body(value="9.99")
    resp, _ = one(client("/client/events", body, company="NOPE99"), config(unknown_company_status=202))
    assert_error(resp, 400, pointer="/data/attributes/value")


def test_with_no_configured_companies_any_six_character_alphanumeric_id_is_accepted() -> None:
    resp, state = one(client("/client/events", event_body(), company="Ab12Cd"), config(company_ids=frozenset()))
    assert resp.status == 202
    assert state["events"][0]["account"] == "Ab12Cd"


def test_with_no_configured_companies_a_malformed_id_is_rejected() -> None:
    resp, _ = one(client("/client/events", event_body(), company="ABC-1234"), config(company_ids=frozenset()))
    assert_error(resp, 400, parameter="company_id")


def test_a_private_key_sent_as_company_id_is_rejected_and_recorded_as_a_violation() -> None:
    resp, state = one(client("/client/events", event_body(), company=KEY))
    assert_error(resp, 400, parameter="company_id")
    assert state["violations"][0]["reason"] == "private key sent as company_id"
    assert state["events"] == []


def test_a_private_key_in_the_authorization_header_of_a_client_call_is_a_violation() -> None:
    resp, state = one(client("/client/events", event_body(), Authorization=f"Klaviyo-API-Key {KEY}"))
    assert_error(resp, 400, parameter="Authorization")
    assert state["violations"][0]["reason"] == "private key sent to a client endpoint"


def test_a_server_request_without_authorization_is_401() -> None:
    resp, state = one(server("/api/events", event_body(), key=None))
    assert_error(resp, 401, "not_authenticated", parameter="Authorization")
    assert state["events"] == []


@pytest.mark.parametrize(
    "header", ["Klaviyo-API-Key pk_wrong", "Token pk_demo_private_key", "pk_demo_private_key", "Klaviyo-API-Key DEMO01"]
)
def test_a_server_request_with_an_invalid_key_is_401(header: str) -> None:
    resp, _ = one(server("/api/events", event_body(), key=None, Authorization=header))
    assert_error(resp, 401, "authentication_failed")


def test_the_auth_failure_status_is_configurable() -> None:
    resp, _ = one(server("/api/events", event_body(), key="pk_wrong"), config(auth_failure_status=400))
    assert_error(resp, 400, "authentication_failed")


def test_a_private_key_sent_as_a_bearer_token_is_401() -> None:
    # Klaviyo's private key scheme is `Klaviyo-API-Key`; `Bearer` carries OAuth access tokens.
    resp, state = one(server("/api/events", event_body(), key=None, Authorization=f"Bearer {KEY}"))
    error = assert_error(resp, 401, "authentication_failed", parameter="Authorization")
    assert "Klaviyo-API-Key" in error["detail"]
    assert state["events"] == []


@pytest.mark.parametrize("scheme", ["Klaviyo-API-Key", "klaviyo-api-key", "KLAVIYO-API-KEY"])
def test_the_private_key_scheme_is_case_insensitive(scheme: str) -> None:
    resp, _ = one(server("/api/events", event_body(), key=None, Authorization=f"{scheme} {KEY}"))
    assert resp.status == 202


def test_a_key_without_the_needed_scope_is_403() -> None:
    cfg = config(private_keys={"pk_profiles_only": frozenset({"profiles:write"})})
    resp, state = one(server("/api/events", event_body(), key="pk_profiles_only"), cfg)
    error = assert_error(resp, 403, "permission_denied")
    assert "events:write" in error["detail"]
    assert state["events"] == []


def test_bulk_subscribe_needs_the_lists_profiles_and_subscriptions_scopes() -> None:
    cfg = config(private_keys={"pk_k": frozenset({"profiles:write", "subscriptions:write"})})
    resp, _ = one(server("/api/profile-subscription-bulk-create-jobs", {}, key="pk_k"), cfg)
    error = assert_error(resp, 403, "permission_denied")
    assert "lists:write" in error["detail"]


def test_server_events_are_recorded_under_the_keys_account() -> None:
    resp, state = one(server("/api/events", event_body()))
    assert resp.status == 202
    assert state["events"][0]["account"] == "DEMO01"


def test_a_key_without_a_configured_account_is_its_own_account() -> None:
    cfg = config(private_keys={"pk_other": frozenset({"events:write"})}, key_accounts={})
    _, state = one(server("/api/events", event_body(), key="pk_other"), cfg)
    assert state["events"][0]["account"] == "pk_other"


def test_the_default_config_knows_the_demo_company_key_and_list() -> None:
    cfg = EmulatorConfig()
    assert cfg.company_ids == frozenset({"DEMO01"})
    assert cfg.lists == frozenset({"LIST01"})
    assert cfg.private_keys["pk_demo_private_key"] == frozenset(
        {"events:write", "profiles:write", "subscriptions:write", "lists:write", "data-privacy:write"}
    )
    assert cfg.revisions == frozenset(
        {"2025-01-15", "2025-04-15", "2025-07-15", "2025-10-15", "2026-01-15", "2026-04-15", "2026-07-15", "2026-10-15"}
    )
    assert (cfg.unknown_company_status, cfg.auth_failure_status) == (400, 401)
