"""Reading console forms: a byte budget and deadlines before anything is parsed."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from aiohttp import web

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.server.bodies import ReadDeadlines, read_limited
from mparticle_klaviyo.server.errors import (
    BodyTimeoutError,
    ClientGoneError,
    UnsupportedEncodingError,
)

# Before login only a password is read: this much at most, within a few seconds.
LOGIN_BYTES = 4096
# After login the largest form is a pasted batch (playground.MAX_INPUT_BYTES, URL-encoded).
FORM_BYTES = 4 * 1024 * 1024
DEADLINES = ReadDeadlines(idle_s=5.0, total_s=10.0, grace_s=5.0)


class Form:
    """A URL-encoded form: every value of every field."""

    def __init__(self, fields: dict[str, list[str]]) -> None:
        self.fields = fields

    def get(self, name: str, default: str = "") -> str:
        """The first value of ``name``."""
        return self.fields.get(name, [default])[0]

    def all(self, name: str) -> list[str]:
        """Every value of ``name`` (checkboxes)."""
        return self.fields.get(name, [])


async def read_form(request: web.Request, limit: int) -> Form | None:
    """The request's URL-encoded form, or None when it is not one, is too slow or malformed.

    Raises ``PayloadTooLargeError`` when it is over ``limit`` bytes, so the answer can say so.
    """
    if request.content_type != "application/x-www-form-urlencoded":
        return None
    try:
        raw = await read_limited(request, limit, DEADLINES)
        return Form(parse_qs(raw.decode(), keep_blank_values=True, max_num_fields=2000))
    except (BodyTimeoutError, ClientGoneError, UnsupportedEncodingError, InputError):
        return None
    except (UnicodeDecodeError, ValueError):
        return None


def too_large(limit: int) -> str:
    """What a refused oversized form is told."""
    return f"The form is larger than {limit:,} bytes: send a smaller batch."


def same_origin(request: web.Request) -> bool:
    """Whether a POST comes from a page of this host (browsers send Origin on every POST)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True  # not a browser: CSRF needs a browser, and the token is still checked
    return urlsplit(origin).netloc == request.host
