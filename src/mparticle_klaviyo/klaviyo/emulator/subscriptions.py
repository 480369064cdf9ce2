"""Consent operations: /client/subscriptions (rule 21), the server bulk subscribe job (22) and
the server bulk unsubscribe job.

Channels are recorded as ``"<channel>.<kind>"`` strings, e.g. ``"email.marketing"``. Without
a ``subscriptions`` object, marketing consent is recorded for each channel whose identifier
(email, phone) the profile carries. Each call also sets the profile's consent status for its
channels and its list membership, so the latest call for a profile decides.

Unsubscribe (``/api/profile-subscription-bulk-delete-jobs``): at most 100 profiles; every
profile names at least one channel to revoke; email needs ``email`` and sms/whatsapp need
``phone_number``, while push tokens may stand alone. The list is optional, must be configured
when given, and the profiles leave it. Nothing is recorded unless every profile passes.
"""

from __future__ import annotations

from typing import Any

from .context import Ctx, Reply
from .errors import invalid
from .identity import SUBSCRIBER_IDENTIFIERS, Identity, invalid_phone, read_identity
from .rules import check_past
from .state import iso

MAX_BULK_PROFILES = 1000
# The spec's description of bulk_unsubscribe_profiles: "Maximum number of profiles per call: 100".
MAX_BULK_UNSUBSCRIBE_PROFILES = 100

# Which identifier each channel needs; push and open tracking need none of ours.
_CHANNEL_NEEDS = {"email": "email", "sms": "phone_number", "whatsapp": "phone_number"}
_NOT_CONSENT = frozenset({"tokens", "anonymous_id"})
_NO_CONSENT_TIME = frozenset({"open_tracking", "click_tracking"})

_Unsubscriber = tuple[Identity, dict[str, Any], list[str], list[str]]
"""One checked profile of an unsubscribe job: identity, resource, channels, push tokens."""


def create_client_subscription(ctx: Ctx, body: dict[str, Any]) -> Reply:
    """POST /client/subscriptions: one profile's consent, added to a configured list."""
    data = body["data"]
    list_id = _list_id(ctx, data["relationships"], "/data/relationships")
    resource = data["attributes"]["profile"]["data"]
    ptr = "/data/attributes/profile/data"
    identity, channels = _read_subscriber(ctx, resource, ptr, historical=False)
    extra = {"custom_source": data["attributes"].get("custom_source"), "endpoint": ctx.endpoint}
    _commit(ctx, [(identity, resource, channels)], list_id, extra)
    return Reply()


def create_server_subscription_bulk(ctx: Ctx, body: dict[str, Any]) -> Reply:
    """POST /api/profile-subscription-bulk-create-jobs: up to 1000 profiles' consent."""
    data = body["data"]
    attrs = data["attributes"]
    profiles = attrs["profiles"]["data"]
    ptr = "/data/attributes/profiles/data"
    if len(profiles) > MAX_BULK_PROFILES:
        raise invalid(f"A maximum of {MAX_BULK_PROFILES} profiles may be sent per request.", ptr)
    relationships = data.get("relationships") or {}
    list_id = _list_id(ctx, relationships, "/data/relationships") if "list" in relationships else None
    historical = bool(attrs.get("historical_import"))
    entries = []
    for index, resource in enumerate(profiles):
        identity, channels = _read_subscriber(ctx, resource, f"{ptr}/{index}", historical=historical)
        entries.append((identity, resource, channels))
    extra = {
        "custom_source": attrs.get("custom_source"),
        "historical_import": historical,
        "endpoint": ctx.endpoint,
    }
    _commit(ctx, entries, list_id, extra)
    return Reply()


def _list_id(ctx: Ctx, relationships: dict[str, Any], ptr: str) -> str:
    list_data = relationships["list"]["data"]
    list_id: str = list_data["id"]
    if list_id not in ctx.config.lists:
        raise invalid(f"List '{list_id}' does not exist.", f"{ptr}/list/data/id")
    return list_id


def _read_subscriber(ctx: Ctx, resource: dict[str, Any], ptr: str, *, historical: bool) -> tuple[Identity, list[str]]:
    identity = read_identity(resource, ptr, SUBSCRIBER_IDENTIFIERS)
    attrs = resource["attributes"]
    subscriptions = attrs.get("subscriptions")
    if subscriptions is None:
        channels = [f"{ch}.marketing" for ch in ("email", "sms") if _has(identity, ch)]
    else:
        channels = _channels(ctx, subscriptions, f"{ptr}/attributes/subscriptions", historical)
        _check_identifiers(identity, attrs, channels, f"{ptr}/attributes")
    ctx.note(identity)
    return identity, channels


def _has(identity: Identity, channel: str) -> bool:
    return _CHANNEL_NEEDS.get(channel, "") in identity.ids


def _channels(ctx: Ctx, subs: dict[str, Any], ptr: str, historical: bool) -> list[str]:
    channels: list[str] = []
    for channel, kinds in subs.items():
        for kind, params in (kinds or {}).items():
            if kind in _NOT_CONSENT or params is None:
                continue
            _check_consented_at(ctx, params, f"{ptr}/{channel}/{kind}", historical, kind)
            channels.append(f"{channel}.{kind}")
    return channels


def _check_consented_at(ctx: Ctx, params: dict[str, Any], ptr: str, historical: bool, kind: str) -> None:
    at = params.get("consented_at")
    if not historical:
        if at is not None:
            raise invalid(
                "'consented_at' can only be provided when 'historical_import' is true.",
                f"{ptr}/consented_at",
            )
        return
    if kind in _NO_CONSENT_TIME:
        return  # tracking consent carries no consent time
    if at is None:
        raise invalid("'consented_at' is required when 'historical_import' is true.", f"{ptr}/consented_at")
    check_past(at, ctx.now, f"{ptr}/consented_at")


def _check_identifiers(identity: Identity, attrs: dict[str, Any], channels: list[str], ptr: str) -> None:
    for channel in dict.fromkeys(c.split(".", 1)[0] for c in channels):
        needed = _CHANNEL_NEEDS.get(channel)
        if needed is None or needed in identity.ids:
            continue
        sent = attrs.get(needed)
        if needed == "phone_number" and sent:
            raise invalid_phone(sent, f"{ptr}/phone_number")
        raise invalid(
            f"'{needed}' must not be empty when the {channel} channel is included in 'subscriptions'.",
            f"{ptr}/{needed}",
        )


def _commit(
    ctx: Ctx,
    entries: list[tuple[Identity, dict[str, Any], list[str]]],
    list_id: str | None,
    extra: dict[str, Any],
) -> None:
    if not ctx.record:
        return
    for identity, resource, channels in entries:
        profile = ctx.upsert(identity, resource)
        ctx.state.record_subscription(profile, identity, list_id, channels, extra)


def delete_server_subscription_bulk(ctx: Ctx, body: dict[str, Any]) -> Reply:
    """POST /api/profile-subscription-bulk-delete-jobs: revoke up to 100 profiles' consent."""
    data = body["data"]
    profiles = data["attributes"]["profiles"]["data"]
    ptr = "/data/attributes/profiles/data"
    if len(profiles) > MAX_BULK_UNSUBSCRIBE_PROFILES:
        raise invalid(f"A maximum of {MAX_BULK_UNSUBSCRIBE_PROFILES} profiles may be sent per request.", ptr)
    relationships = data.get("relationships") or {}
    list_id = _list_id(ctx, relationships, "/data/relationships") if "list" in relationships else None
    # All-or-nothing, as the subscribe job: every profile is checked before any is recorded.
    entries = [_read_unsubscriber(ctx, resource, f"{ptr}/{index}") for index, resource in enumerate(profiles)]
    extra = {"endpoint": ctx.endpoint, "time": iso(ctx.now)}
    for identity, resource, channels, tokens in entries:
        # Klaviyo creates a profile it cannot find, then unsubscribes it (spec, request body).
        profile = ctx.upsert(identity, resource) if identity.ids else None
        ctx.state.record_unsubscription(
            ctx.account, profile, identity, list_id, channels, {**extra, "push_tokens": tokens}
        )
    return Reply()


def _read_unsubscriber(ctx: Ctx, resource: dict[str, Any], ptr: str) -> _Unsubscriber:
    attrs = resource["attributes"]
    subs_ptr = f"{ptr}/attributes/subscriptions"
    channels = _revoked(attrs["subscriptions"])
    if not channels:
        raise invalid("'subscriptions' must name at least one channel to unsubscribe from.", subs_ptr)
    push = attrs["subscriptions"].get("push") or {}
    tokens = [entry["token"] for entry in push.get("tokens", ())]
    # Push tokens identify a device on their own; every other channel needs an email or phone.
    alone = bool(tokens) and not (attrs.get("email") or attrs.get("phone_number"))
    if alone and all(channel.startswith("push.") for channel in channels):
        return Identity(), resource, channels, tokens
    identity = read_identity(resource, ptr, SUBSCRIBER_IDENTIFIERS)
    _check_identifiers(identity, attrs, channels, f"{ptr}/attributes")
    ctx.note(identity)
    return identity, resource, channels, tokens


def _revoked(subs: dict[str, Any]) -> list[str]:
    """The ``"<channel>.<kind>"`` names an unsubscribe revokes (null members revoke nothing)."""
    return [
        f"{channel}.{kind}"
        for channel, kinds in subs.items()
        for kind, params in (kinds or {}).items()
        if kind not in _NOT_CONSENT and params is not None
    ]
