"""The Firehose registration response and the ``registration`` command."""

from __future__ import annotations

import json
import subprocess
import sys

from mparticle_klaviyo.mparticle.registration import registration_response
from mparticle_klaviyo.overrides import OVERRIDABLE, setting_name


def test_registration_declares_the_six_supported_types_as_firehose_event_types() -> None:
    types = registration_response()["event_processing_registration"]["supported_event_types"]
    assert sorted(types) == sorted(
        [
            "application_state_transition",
            "custom_event",
            "impression",
            "product_action",
            "promotion_action",
            "screen_view",
            "session_end",
            "session_start",
        ]
    )


def test_registration_declares_the_seed_identities_and_platforms() -> None:
    response = registration_response()
    identities = [i["type"] for i in response["permissions"]["user_identities"]]
    assert identities == [
        "email",
        "other",
        *[f"other{n}" for n in range(2, 11)],
        "mobile_number",
        "phone_number_2",
        "phone_number_3",
        "customer",
    ]
    assert all(i["encoding"] == "raw" for i in response["permissions"]["user_identities"])
    environments = response["event_processing_registration"]["supported_runtime_environments"]
    assert "unknown" in environments and "mobileweb" in environments and "desktop" not in environments


def test_registration_settings_are_text_settings_and_the_key_is_confidential() -> None:
    settings = registration_response()["event_processing_registration"]["account_settings"]
    assert {s["type"] for s in settings} == {"text"}
    key = next(s for s in settings if s["id"] == "publicApiKey")
    assert key["required"] and key["confidential"]


def test_registration_declares_the_external_id_setting_as_optional_without_a_default() -> None:
    settings = registration_response()["event_processing_registration"]["account_settings"]
    setting = next(s for s in settings if s["id"] == "externalIdIdentityType")
    assert (setting["type"], setting["required"], setting["confidential"]) == ("text", False, False)
    assert "default_value" not in setting
    assert "Customer ID" in setting["description"] and "MPID" in setting["description"]


def test_every_registered_setting_is_one_a_request_may_override() -> None:
    settings = registration_response()["event_processing_registration"]["account_settings"]
    assert {setting_name(s["id"]) for s in settings} <= OVERRIDABLE


def test_registration_echoes_the_request_id() -> None:
    assert registration_response("abc", 5)["id"] == "abc"
    assert registration_response("abc", 5)["timestamp_ms"] == 5


def test_the_registration_command_prints_the_response_as_json() -> None:
    output = subprocess.run(
        [sys.executable, "-m", "mparticle_klaviyo", "registration"], capture_output=True, check=True, text=True
    ).stdout
    assert json.loads(output)["type"] == "module_registration_response"
