"""Request-level rules checked before the body: revision, content type, auth, body decoding.

Statuses Klaviyo does not document are our choices (research §8): a bad or missing
``revision`` is 400 with ``source.parameter = "revision"``; a wrong content type is 415; a
missing ``company_id`` is 400 with ``source.parameter = "company_id"``; a private key sent to
a client endpoint is 400 and recorded as a violation; server auth failures use the configured
status (default 401), including a private key sent as ``Bearer`` (Klaviyo's scheme for OAuth
access tokens); a key without the needed scope is 403; an oversized body is 413.
"""

from __future__ import annotations

import re
import time

import msgspec
from aiohttp import web

from .config import EmulatorConfig
from .errors import ApiError, invalid_parameter, invalid_payload, not_found
from .operations import Operation
from .rules import REVISION, is_date, revision_date
from .state import State

JSON_TYPES = frozenset({"application/json", "application/vnd.api+json"})
_COMPANY_ID = re.compile(r"[A-Za-z0-9]{6}")
_KEY_SCHEME = "klaviyo-api-key"
_decoder = msgspec.json.Decoder()


def check_revision(value: str | None, config: EmulatorConfig, now: float, op: Operation) -> str:
    """The ``revision`` header, which must be well formed, not in the future, and known."""
    if not value:
        raise invalid_parameter("The 'revision' header is required.", "revision")
    if REVISION.fullmatch(value) is None or not is_date(revision_date(value)):
        raise invalid_parameter(f"Invalid revision '{value}': expected YYYY-MM-DD or YYYY-MM-DD.pre.", "revision")
    if revision_date(value) > time.strftime("%Y-%m-%d", time.gmtime(now)):
        raise invalid_parameter("unable to specify a future revision date", "revision")
    if value not in config.revisions:
        known = ", ".join(sorted(config.revisions))
        raise invalid_parameter(f"Unknown revision '{value}'. Known: {known}.", "revision")
    if revision_date(value) < op.since:
        raise not_found("No valid revisions found for method")
    return value


def check_content_type(request: web.Request) -> None:
    """Only JSON bodies (``application/json`` or JSON:API); parameters such as charset are ok."""
    if request.content_type not in JSON_TYPES:
        raw = request.headers.get("Content-Type", "")
        raise ApiError(
            415,
            "unsupported_media_type",
            "Unsupported media type.",
            f'Unsupported media type "{raw}" in request.',
            parameter="Content-Type",
        )


def client_account(request: web.Request, config: EmulatorConfig, state: State) -> tuple[str, bool]:
    """The company id of a /client/* request and whether its data may be recorded."""
    header = request.headers.get("Authorization", "")
    if "pk_" in header:
        state.violate("private key sent to a client endpoint", request.method, request.path)
        raise invalid_parameter("Never use a private API key with client-side endpoints.", "Authorization")
    company = request.query.get("company_id", "")
    if not company:
        raise invalid_parameter("The 'company_id' query parameter is required.", "company_id")
    if company.startswith("pk_"):
        state.violate("private key sent as company_id", request.method, request.path)
        raise invalid_parameter(
            "Never use a private API key with client-side endpoints; 'company_id' is the public API key.",
            "company_id",
        )
    if _known_company(company, config):
        return company, True
    status = config.unknown_company_status
    if status >= 400:
        raise ApiError(
            status, _code(status), _title(status), f"Invalid company_id '{company}'.", parameter="company_id"
        )
    state.violate("unknown company_id", request.method, request.path, company_id=company)
    return company, False


def _known_company(company: str, config: EmulatorConfig) -> bool:
    if config.company_ids:
        return company in config.company_ids
    return _COMPANY_ID.fullmatch(company) is not None


def server_account(request: web.Request, config: EmulatorConfig, op: Operation) -> str:
    """The account of a /api/* request's private key, which must hold the needed scopes.

    The private key scheme is ``Klaviyo-API-Key`` (the spec's only API-key scheme); ``Bearer``
    carries OAuth access tokens, which the emulator does not issue, so a key sent that way fails.
    """
    status = config.auth_failure_status
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if not header:
        raise _auth_failed(
            status, "Missing API key: send 'Authorization: Klaviyo-API-Key <private key>'.", missing=True
        )
    if scheme.lower() == "bearer":
        raise _auth_failed(
            status,
            "A 'Bearer' token must be an OAuth access token; send a private key as "
            "'Authorization: Klaviyo-API-Key <private key>'.",
        )
    scopes = config.private_keys.get(token.strip())
    if scheme.lower() != _KEY_SCHEME or scopes is None:
        raise _auth_failed(status, "Incorrect authentication credentials.")
    missing = op.scopes - scopes
    if missing:
        raise ApiError(
            403,
            "permission_denied",
            "You do not have permission to perform this action.",
            f"This API key is missing required scopes: {', '.join(sorted(missing))}.",
            parameter="Authorization",
        )
    return config.account_of_key(token.strip())


def _auth_failed(status: int, detail: str, *, missing: bool = False) -> ApiError:
    if missing:
        code, title = "not_authenticated", "Authentication credentials were not provided."
    else:
        code, title = "authentication_failed", "Incorrect authentication credentials."
    return ApiError(status, code, title, detail, parameter="Authorization")


async def read_body(request: web.Request, limit: int) -> dict[str, object]:
    """The body as a JSON object, at most ``limit`` bytes, UTF-8."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large(limit) from None
    if len(raw) > limit:
        raise too_large(limit)
    try:
        body = _decoder.decode(raw)
    except (msgspec.DecodeError, ValueError):
        raise invalid_payload() from None
    if type(body) is not dict:
        raise invalid_payload()
    return body


def too_large(limit: int) -> ApiError:
    """413 for a body over the endpoint's limit."""
    return ApiError(
        413,
        "payload_too_large",
        "Payload too large.",
        f"The request body must not exceed {limit} bytes.",
        pointer="/data",
    )


def _code(status: int) -> str:
    return {401: "not_authenticated", 403: "permission_denied", 404: "not_found"}.get(status, "invalid")


def _title(status: int) -> str:
    return {401: "Authentication failed.", 403: "Permission denied.", 404: "Not found."}.get(status, "Invalid input.")
