"""Request body schemas of the emulated operations, written from our reading of revision 2026-07-15.

Each declaration lists exactly the keys Klaviyo documents; anything else is an unknown field.
Semantic rules (identifiers, limits, time window, consent) live in the operation handlers.
"""

from __future__ import annotations

from .rules import is_date, is_datetime
from .schema import AnyOf, Arr, Bool, Free, Node, Num, Obj, Str, TypeTag

DATE_TIME = Str(fmt=is_datetime, expected="an RFC 3339 date-time string")
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

PROFILE_META = Obj(
    {
        "patch_properties": Obj({"append": Free(True), "unappend": Free(True), "unset": _STR_OR_STRS}, nullable=True),
        "patch_identifiers": Obj({"append": Free(), "unappend": Free()}, nullable=True),
    },
    nullable=True,
)

_IDENTITY = ("email", "phone_number", "external_id")
_PERSONAL = ("first_name", "last_name", "organization", "locale", "title", "image")


def _profile_attributes(*extra: str, meta: bool = False, **nodes: Node) -> Obj:
    fields: dict[str, Node] = {
        **_strs(*_IDENTITY, *extra, "_kx", *_PERSONAL),
        "location": LOCATION,
        "properties": Free(True),
        **nodes,
    }
    if meta:
        fields["meta"] = PROFILE_META
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

# /client/events and /api/events: profile `meta` sits inside attributes in 2026-07-15.
EVENT_PROFILE = _wrap(_resource("profile", _profile_attributes("anonymous_id", meta=True), with_id=True))
# Bulk entries and /client/profiles: profile `meta` sits beside attributes.
ONSITE_PROFILE = _resource("profile", _profile_attributes("anonymous_id"), with_id=True, meta=PROFILE_META)

_EVENT_FIELDS: dict[str, Node] = {
    "properties": Free(),
    "time": DATE_TIME,
    "value": Num(True),
    "value_currency": Str(),
    "unique_id": Str(),
    "backfill": Bool(True),
    "metric": METRIC,
}


def _event(profile: Obj) -> Obj:
    attributes = Obj({**_EVENT_FIELDS, "profile": profile}, ("properties", "metric", "profile"))
    return Obj({"data": _resource("event", attributes)}, ("data",), resource="event")


EVENT = _event(EVENT_PROFILE)
# From revision 2026-10-15 (per Klaviyo's SDK models) the event profile's `meta` moves beside
# its attributes, as in bulk entries.
EVENT_2026_10 = _event(_wrap(ONSITE_PROFILE))

_BULK_ENTRY = _resource(
    "event-bulk-create",
    Obj(
        {
            "backfill": Bool(True),
            "profile": _wrap(ONSITE_PROFILE),
            "events": _wrap(Arr(_resource("event", Obj(_EVENT_FIELDS, ("properties", "metric"))))),
        },
        ("profile", "events"),
    ),
)

CLIENT_EVENT_BULK = Obj({"data": _BULK_ENTRY}, ("data",), resource="event-bulk-create")

SERVER_EVENT_BULK = Obj(
    {
        "data": _resource(
            "event-bulk-create-job",
            Obj({"events-bulk-create": _wrap(Arr(_BULK_ENTRY))}, ("events-bulk-create",)),
        )
    },
    ("data",),
    resource="event-bulk-create-job",
)

CLIENT_PROFILE = Obj({"data": ONSITE_PROFILE}, ("data",), resource="profile")

_MARKETING = Obj({"consent": _CONSENT, "consented_at": DATE_TIME}, ("consent",))
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

SUBSCRIPTION_CHANNELS = Obj(
    {
        "email": Obj({"marketing": _MARKETING, "open_tracking": Obj({"consent": _CONSENT}, ("consent",))}),
        "sms": Obj({"marketing": _MARKETING, "transactional": _MARKETING}),
        "whatsapp": Obj({"marketing": _MARKETING, "transactional": _MARKETING}),
        "push": Obj(
            {"marketing": _MARKETING, "tokens": Arr(_PUSH_TOKEN, True), "anonymous_id": Str()},
            ("marketing",),
        ),
    },
    nullable=True,
)

LIST_RELATIONSHIP = Obj(
    {
        "list": _wrap(
            Obj(
                {"type": TypeTag("list"), "id": Str(nullable=False)},
                ("type", "id"),
                resource="list",
            )
        )
    },
    ("list",),
)

CLIENT_SUBSCRIPTION = Obj(
    {
        "data": _resource(
            "subscription",
            Obj(
                {
                    "custom_source": Str(),
                    "profile": _wrap(
                        _resource(
                            "profile",
                            _profile_attributes(meta=True, subscriptions=SUBSCRIPTION_CHANNELS),
                            with_id=True,
                        )
                    ),
                },
                ("profile",),
            ),
            relationships=LIST_RELATIONSHIP,
            required=("relationships",),
        )
    },
    ("data",),
    resource="subscription",
)

_BULK_SUBSCRIBER = _resource(
    "profile",
    Obj(
        {
            "email": Str(),
            "phone_number": Str(),
            "subscriptions": SUBSCRIPTION_CHANNELS,
            "age_gated_date_of_birth": Str(fmt=is_date, expected="a date (YYYY-MM-DD)"),
        },
        ("subscriptions",),
    ),
    with_id=True,
)

SERVER_SUBSCRIPTION_BULK = Obj(
    {
        "data": _resource(
            "profile-subscription-bulk-create-job",
            Obj(
                {
                    "custom_source": Str(),
                    "profiles": _wrap(Arr(_BULK_SUBSCRIBER)),
                    "historical_import": Bool(True),
                },
                ("profiles",),
            ),
            relationships=Obj({"list": LIST_RELATIONSHIP.fields["list"]}),
        )
    },
    ("data",),
    resource="profile-subscription-bulk-create-job",
)

PROFILE_IMPORT = Obj(
    {"data": _resource("profile", _profile_attributes(), with_id=True, meta=PROFILE_META)},
    ("data",),
    resource="profile",
)
