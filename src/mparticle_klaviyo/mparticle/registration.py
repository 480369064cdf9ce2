"""The Firehose ``module_registration_response`` declaring what this integration accepts."""

from __future__ import annotations

import time
import uuid
from typing import Any

from mparticle_klaviyo import __version__

FIREHOSE_VERSION = "3.2.0"
EVENT_TYPES = (
    "application_state_transition",
    "product_action",
    "promotion_action",
    "impression",
    "custom_event",
    "screen_view",
    "session_start",
    "session_end",
)
USER_IDENTITIES = (
    "email",
    "other",
    *(f"other{n}" for n in range(2, 11)),
    "mobile_number",
    "phone_number_2",
    "phone_number_3",
    "customer",  # for the External ID Identity Type setting (Firehose sends only what is declared)
)
# Firehose runtime environments; "unknown" is how Custom Feeds data arrives.
RUNTIME_ENVIRONMENTS = ("ios", "android", "mobileweb", "tvos", "roku", "unknown", "alexa", "smarttv", "firetv", "xbox")

_SETTINGS: tuple[tuple[str, str, str, bool, bool, str], ...] = (
    ("publicApiKey", "Public API Key", "Your Klaviyo public API key (site ID).", True, True, ""),
    (
        "externalEmailIdentityType",
        "External Email Identity Type",
        "Which identity holds the email: Email, Other, Other2 ... Other10.",
        False,
        False,
        "Email",
    ),
    (
        "phoneIdentifier",
        "Phone Identifier",
        "Which identity holds the phone (E.164): Mobile Number, Phone Number 2, Phone Number 3.",
        False,
        False,
        "Mobile Number",
    ),
    (
        "externalIdIdentityType",
        "External ID Identity Type",
        "Which identity is sent as the Klaviyo external_id: Customer ID, Other, Other2 ... Other10, MPID. Empty: none.",
        False,
        False,
        "",
    ),
    (
        "consentMapping",
        "Consent Mapping",
        "JSON: mParticle consent purpose -> Klaviyo consent (email, sms, mobile, web, directmail).",
        False,
        False,
        "",
    ),
    (
        "propertyMapping",
        "Property Mapping",
        "JSON: mParticle user attribute -> Klaviyo reserved property ($first_name, location.city ...).",
        False,
        False,
        "",
    ),
    ("listId", "List ID", "Klaviyo list that consent subscriptions are added to.", False, False, ""),
)


def _setting(
    setting_id: str, name: str, description: str, required: bool, confidential: bool, default: str
) -> dict[str, Any]:
    setting: dict[str, Any] = {
        "type": "text",
        "id": setting_id,
        "name": name,
        "description": description,
        "visible": True,
        "required": required,
        "confidential": confidential,
    }
    if default:
        setting["default_value"] = default
    return setting


def registration_response(
    request_id: str | None = None, now_ms: int | None = None, *, erasure: bool = False
) -> dict[str, Any]:
    """The registration response; ``id`` echoes the request's id when given.

    ``erasure`` declares DSR support (erasure requests), for a connection with ``forward_erasure``.
    """
    response = {
        "type": "module_registration_response",
        "id": request_id or str(uuid.uuid4()),
        "timestamp_ms": now_ms if now_ms is not None else int(time.time() * 1000),
        "firehose_version": FIREHOSE_VERSION,
        "sdk_version": FIREHOSE_VERSION,
        "name": "Klaviyo",
        "description": "Forwards events and profiles to Klaviyo (self-hosted mparticle-klaviyo).",
        "version": __version__,
        "permissions": {
            "user_identities": [{"type": t, "encoding": "raw", "required": False} for t in USER_IDENTITIES],
            "allow_user_attributes": True,
            "allow_consent_state": True,
            "allow_access_mpid": True,
        },
        "event_processing_registration": {
            "account_settings": [_setting(*s) for s in _SETTINGS],
            "supported_event_types": list(EVENT_TYPES),
            "supported_runtime_environments": list(RUNTIME_ENVIRONMENTS),
            "supported_system_notification_types": ["gdpr_consent_state", "ccpa_consent_state"],
            "max_data_age_hours": 24,
        },
    }
    if erasure:
        response["dsr_processing_registration"] = {
            "account_settings": [_setting(*s) for s in _SETTINGS],
            "supported_dsr_types": ["erasure"],
        }
    return response
