"""Request body schemas of the emulated endpoints at each revision (see :mod:`.revisions`).

Each declaration lists exactly the keys Klaviyo documents at a revision; anything else is an
unknown field. :func:`bodies` builds every endpoint's schema for one revision's features
(once per feature set). Semantic rules (identifiers, limits, time window, consent) live in
the operation handlers.
"""

from __future__ import annotations

import functools

from . import revisions as rev
from .rules import is_date, is_datetime
from .schema import AnyOf, Arr, Bool, Free, Node, Num, Obj, Str, TypeTag

Features = frozenset[str]
"""The body features of one revision (the names in :mod:`.revisions`)."""

DATE_TIME = Str(fmt=is_datetime, expected="an ISO 8601 date-time string")
_CONSENT = Str(nullable=False, choices=("SUBSCRIBED",))
_STR_OR_NUM = AnyOf((Str(nullable=False), Num()), "a string or a number")
_STR_OR_STRS = AnyOf((Str(nullable=False), Arr(Str(nullable=False))), "a string or strings")


def _strs(*names: str) -> dict[str, Node]:
    return {name: Str() for name in names}


LOCATION = Obj(
    {
        **_strs("address1", "address2", "city", "country", "region", "zip", "timezone", "ip"),
        "latitude": _STR_OR_NUM,
        "longitude": _STR_OR_NUM,
    },
    nullable=True,
)

_PATCH_PROPERTIES = Obj({"append": Free(True), "unappend": Free(True), "unset": _STR_OR_STRS}, nullable=True)
_PATCH_IDENTIFIERS = Obj({"append": Free(), "unappend": Free()}, nullable=True)
_IDENTITY = ("email", "phone_number", "external_id")
_PERSONAL = ("first_name", "last_name", "organization", "locale", "title", "image")


def _profile_meta(features: Features) -> Obj:
    fields: dict[str, Node] = {"patch_properties": _PATCH_PROPERTIES}
    if rev.PATCH_IDENTIFIERS in features:
        fields["patch_identifiers"] = _PATCH_IDENTIFIERS
    return Obj(fields, nullable=True)


def _profile_attributes(*extra: str, meta: Obj | None = None, **nodes: Node) -> Obj:
    fields: dict[str, Node] = {
        **_strs(*_IDENTITY, *extra, "_kx", *_PERSONAL),
        "location": LOCATION,
        "properties": Free(True),
        **nodes,
    }
    if meta is not None:
        fields["meta"] = meta
    return Obj(fields)


def _resource(
    type_name: str,
    attributes: Node,
    *,
    with_id: bool = False,
    required: tuple[str, ...] = (),
    **members: Node,
) -> Obj:
    fields: dict[str, Node] = {"type": TypeTag(type_name), "attributes": attributes, **members}
    if with_id:
        fields["id"] = Str()
    return Obj(fields, ("type", "attributes", *required), resource=type_name)


def _wrap(data: Node, required: bool = True) -> Obj:
    return Obj({"data": data}, ("data",) if required else ())


METRIC = _wrap(_resource("metric", Obj({"name": Str(nullable=False), "service": Str()}, ("name",))))


def _onsite_profile(features: Features) -> Obj:
    """A profile with ``meta`` beside its attributes: bulk entries and /client/profiles."""
    return _resource("profile", _profile_attributes("anonymous_id"), with_id=True, meta=_profile_meta(features))


def _event_profile(features: Features) -> Obj:
    """The profile of /client/events and /api/events: ``meta`` inside its attributes until 2026-10-15."""
    if rev.EVENT_META_BESIDE in features:
        return _wrap(_onsite_profile(features))
    attributes = _profile_attributes("anonymous_id", meta=_profile_meta(features))
    return _wrap(_resource("profile", attributes, with_id=True))


def _event_fields(features: Features) -> dict[str, Node]:
    fields: dict[str, Node] = {
        "properties": Free(),
        "time": DATE_TIME,
        "value": Num(True),
        "value_currency": Str(),
        "unique_id": Str(),
        "metric": METRIC,
    }
    if rev.BACKFILL in features:
        fields["backfill"] = Bool(True)
    return fields


def _event(features: Features) -> Obj:
    attributes = Obj(
        {**_event_fields(features), "profile": _event_profile(features)}, ("properties", "metric", "profile")
    )
    return Obj({"data": _resource("event", attributes)}, ("data",), resource="event")


def _bulk_entry(features: Features) -> Obj:
    events = Arr(_resource("event", Obj(_event_fields(features), ("properties", "metric"))))
    fields: dict[str, Node] = {"profile": _wrap(_onsite_profile(features)), "events": _wrap(events)}
    if rev.BACKFILL in features:
        fields["backfill"] = Bool(True)
    return _resource("event-bulk-create", Obj(fields, ("profile", "events")))


def _server_event_bulk(features: Features) -> Obj:
    attributes = Obj({"events-bulk-create": _wrap(Arr(_bulk_entry(features)))}, ("events-bulk-create",))
    return Obj({"data": _resource("event-bulk-create-job", attributes)}, ("data",), resource="event-bulk-create-job")


def _consent(nullable: bool = True) -> Obj:
    """One kind of consent: ``consent`` ("SUBSCRIBED") and, for historical imports, ``consented_at``."""
    return Obj({"consent": _CONSENT, "consented_at": DATE_TIME}, ("consent",), nullable=nullable)


_MARKETING = _consent()
_CONSENT_ONLY = Obj({"consent": _CONSENT}, ("consent",), nullable=True)
_PUSH_TOKEN = Obj(
    {
        "token": Str(nullable=False),
        "platform": Str(nullable=False, choices=("android", "ios")),
        "vendor": Str(nullable=False, choices=("apns", "fcm")),
        "enablement_status": Str(choices=("AUTHORIZED", "DENIED", "NOT_DETERMINED", "PROVISIONAL", "UNAUTHORIZED")),
        "background": Str(choices=("AVAILABLE", "DENIED", "RESTRICTED")),
        "device_metadata": Free(True),
    },
    ("token", "platform", "vendor"),
)
_TWO_KINDS = Obj({"marketing": _MARKETING, "transactional": _MARKETING}, nullable=True)
_PUSH = Obj(
    {
        "marketing": _consent(nullable=False),
        "tokens": Arr(_PUSH_TOKEN, True),
        "anonymous_id": Str(),
    },
    ("marketing",),
    nullable=True,
)


def _email_channel(features: Features) -> Obj:
    """``email``: marketing (required until open tracking arrived), open and click tracking."""
    marketing_required = rev.OPEN_TRACKING not in features
    fields: dict[str, Node] = {"marketing": _consent(nullable=not marketing_required)}
    if rev.OPEN_TRACKING in features:
        fields["open_tracking"] = _CONSENT_ONLY
    if rev.CLICK_TRACKING in features:
        fields["click_tracking"] = _CONSENT_ONLY
    return Obj(fields, ("marketing",) if marketing_required else (), nullable=True)


def _channels(features: Features, nullable: bool = True) -> Obj:
    """The ``subscriptions`` object: one member per consent channel of the revision."""
    fields: dict[str, Node] = {"email": _email_channel(features), "sms": _TWO_KINDS}
    if rev.WHATSAPP in features:
        fields["whatsapp"] = _TWO_KINDS
    if rev.PUSH in features:
        fields["push"] = _PUSH
    return Obj(fields, nullable=nullable)


_LIST_DATA = _wrap(Obj({"type": TypeTag("list"), "id": Str(nullable=False)}, ("type", "id"), resource="list"))


def _client_subscription(features: Features) -> Obj:
    extra = ("anonymous_id",) if rev.SUBSCRIPTION_ANONYMOUS_ID in features else ()
    attributes = _profile_attributes(*extra, meta=_profile_meta(features), subscriptions=_channels(features))
    profile = _wrap(_resource("profile", attributes, with_id=True))
    data = _resource(
        "subscription",
        Obj({"custom_source": Str(), "profile": profile}, ("profile",)),
        relationships=Obj({"list": _LIST_DATA}, ("list",)),
        required=("relationships",),
    )
    return Obj({"data": data}, ("data",), resource="subscription")


def _server_subscription_bulk(features: Features) -> Obj:
    subscriber = Obj(
        {
            "email": Str(),
            "phone_number": Str(),
            "subscriptions": _channels(features, nullable=False),
            "age_gated_date_of_birth": Str(fmt=is_date, expected="a date (YYYY-MM-DD)"),
        },
        ("subscriptions",),
    )
    attributes = Obj(
        {
            "custom_source": Str(),
            "profiles": _wrap(Arr(_resource("profile", subscriber, with_id=True))),
            "historical_import": Bool(True),
        },
        ("profiles",),
    )
    data = _resource("profile-subscription-bulk-create-job", attributes, relationships=Obj({"list": _LIST_DATA}))
    return Obj({"data": data}, ("data",), resource="profile-subscription-bulk-create-job")


_UNSUBSCRIBED = Str(nullable=False, choices=("UNSUBSCRIBED",))


def _revoke(nullable: bool = True) -> Obj:
    """One kind of consent to revoke: ``consent`` ("UNSUBSCRIBED"), nothing else."""
    return Obj({"consent": _UNSUBSCRIBED}, ("consent",), nullable=nullable)


def _revoke_kinds(*kinds: str) -> Obj:
    return Obj({kind: _revoke() for kind in kinds}, nullable=True)


def _email_revocation(features: Features) -> Obj:
    """``email`` on an unsubscribe: marketing (required until open tracking arrived), tracking."""
    marketing_required = rev.OPEN_TRACKING not in features
    fields: dict[str, Node] = {"marketing": _revoke(nullable=not marketing_required)}
    if rev.OPEN_TRACKING in features:
        fields["open_tracking"] = _revoke()
    if rev.CLICK_TRACKING in features:
        fields["click_tracking"] = _revoke()
    return Obj(fields, ("marketing",) if marketing_required else (), nullable=True)


def _revocations(features: Features) -> Obj:
    """The ``subscriptions`` of an unsubscribed profile: the channels and kinds to revoke."""
    fields: dict[str, Node] = {"email": _email_revocation(features), "sms": _revoke_kinds("marketing", "transactional")}
    if rev.WHATSAPP in features:
        fields["whatsapp"] = _revoke_kinds("marketing", "transactional", "conversational")
    if rev.PUSH in features:
        # Unlike on subscribe, the tokens to remove are required and there is no anonymous_id.
        push = {"marketing": _revoke(nullable=False), "tokens": Arr(_PUSH_TOKEN)}
        fields["push"] = Obj(push, ("marketing", "tokens"), nullable=True)
    return Obj(fields)


def _server_unsubscription_bulk(features: Features) -> Obj:
    unsubscriber = Obj(
        {"email": Str(), "phone_number": Str(), "subscriptions": _revocations(features)}, ("subscriptions",)
    )
    attributes = Obj({"profiles": _wrap(Arr(_resource("profile", unsubscriber)))}, ("profiles",))
    data = _resource("profile-subscription-bulk-delete-job", attributes, relationships=Obj({"list": _LIST_DATA}))
    return Obj({"data": data}, ("data",), resource="profile-subscription-bulk-delete-job")


def _deletion_job() -> Obj:
    profile = _resource("profile", Obj(_strs("email", "phone_number")), with_id=True)
    data = _resource("data-privacy-deletion-job", Obj({"profile": _wrap(profile)}, ("profile",)))
    return Obj({"data": data}, ("data",), resource="data-privacy-deletion-job")


def _profile_import(features: Features) -> Obj:
    extra = ("anonymous_id",) if rev.IMPORT_ANONYMOUS_ID in features else ()
    data = _resource("profile", _profile_attributes(*extra), with_id=True, meta=_profile_meta(features))
    return Obj({"data": data}, ("data",), resource="profile")


@functools.cache
def bodies(features: Features) -> dict[str, Obj]:
    """The body schema of every emulated endpoint path for a revision with ``features``."""
    event = _event(features)
    return {
        "/client/events": event,
        "/api/events": event,
        "/client/profiles": Obj({"data": _onsite_profile(features)}, ("data",), resource="profile"),
        "/client/subscriptions": _client_subscription(features),
        "/client/event-bulk-create": Obj({"data": _bulk_entry(features)}, ("data",), resource="event-bulk-create"),
        "/api/event-bulk-create-jobs": _server_event_bulk(features),
        "/api/profile-subscription-bulk-create-jobs": _server_subscription_bulk(features),
        "/api/profile-subscription-bulk-delete-jobs": _server_unsubscription_bulk(features),
        "/api/profile-import": _profile_import(features),
        "/api/data-privacy-deletion-jobs": _deletion_job(),
    }
