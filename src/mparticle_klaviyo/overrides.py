"""Firehose ``account.account_settings`` (strings, camelCase ids) -> connection overrides."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from mparticle_klaviyo.config import Connection, ConnectionSettings
from mparticle_klaviyo.errors import InputError, join_pointer, validation_message

_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
SETTINGS_POINTER = ("account", "account_settings")


def setting_name(setting_id: str) -> str:
    """``externalEmailIdentityType`` -> ``external_email_identity_type`` (snake case passes)."""
    return _CAMEL_BOUNDARY.sub("_", setting_id).lower()


# What a Firehose request may set: the integration's own settings. Where data goes and how it
# is authenticated (URLs, private keys, ingest credentials, limits) stays with the operator.
OVERRIDABLE = frozenset(
    {
        "public_api_key",
        "external_email_identity_type",
        "phone_identifier",
        "external_id_identity_type",
        "consent_mapping",
        "property_mapping",
        "list_id",
        "default_phone_region",
        "metric_names",
        "supported_platforms",
    }
)


def firehose_overrides(account_settings: dict[str, str]) -> dict[str, Any]:
    """The integration settings of a request, keyed by our names; other ids are ignored."""
    known = OVERRIDABLE & set(ConnectionSettings.model_fields)
    overrides: dict[str, Any] = {}
    for setting_id, value in account_settings.items():
        name = setting_name(setting_id)
        # Firehose sends every setting, empty ones as "": those keep the configured value.
        if name in known and value != "":
            overrides[name] = value
    return overrides


def connection_for_request(connection: Connection, account_settings: dict[str, str] | None) -> Connection:
    """The connection with a Firehose request's settings applied; bad ones raise InputError."""
    if not account_settings:
        return connection
    overrides = firehose_overrides(account_settings)
    try:
        return connection.with_overrides(overrides)
    except ValidationError as exc:
        error = exc.errors(include_input=False, include_url=False)[0]
        name = str(error["loc"][0]) if error["loc"] else ""
        setting_id = next((k for k in account_settings if setting_name(k) == name), name)
        message = validation_message(error)
        raise InputError(join_pointer(*SETTINGS_POINTER, setting_id), message) from None
