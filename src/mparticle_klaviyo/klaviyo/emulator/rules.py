"""Value rules Klaviyo applies beyond its schema: formats, time window, per-revision limits.

Date-times follow Klaviyo's datetime guide: ISO 8601 with ``T`` or a space between date and
time, optional fractions, and an optional offset; a time without an offset is UTC (what
Klaviyo's Python SDK sends for a naive ``datetime``). Phone numbers must be E.164 *and* a
number that can exist (``phonenumbers``' metadata), so ``+10000000000`` is refused.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, date, datetime

import phonenumbers

from .errors import invalid
from .revisions import rules_at
from .schema import escape

E164 = re.compile(r"\+[1-9]\d{1,14}")
"""A phone number in E.164 form (matched whole)."""

# Deliberately simple: Klaviyo's exact email rule is unpublished (research §8 rule 17).
EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")

CURRENCY = re.compile(r"[A-Z]{3}")
"""An ISO 4217 alphabetic code (matched whole)."""

_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
REVISION = re.compile(r"\d{4}-\d{2}-\d{2}(\.pre)?")
"""The ``revision`` header format (matched whole)."""

MAX_METRIC_NAME = 127
MAX_STRING_BYTES = 100 * 1024
MAX_ARRAY_ITEMS = 4000
MAX_NESTING = 10
YEAR_SECONDS = 365 * 86400


@functools.lru_cache(maxsize=65_536)  # parsing costs ~20 µs; benchmarks repeat numbers
def is_phone_number(phone: str) -> bool:
    """Whether ``phone`` is an E.164 string such as ``+15005550006`` of a number that can exist."""
    if E164.fullmatch(phone) is None:
        return False
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(parsed))


def is_email(email: str) -> bool:
    """Whether ``email`` looks like ``local@domain.tld``."""
    return EMAIL.fullmatch(email) is not None


def parse_datetime(text: str) -> datetime | None:
    """An ISO 8601 date-time, UTC when it has no offset; None for dates, epochs and the rest."""
    if _DATE_TIME.fullmatch(text) is None:
        return None
    try:
        moment = datetime.fromisoformat(text.upper())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def is_datetime(text: str) -> bool:
    """Whether ``text`` is an ISO 8601 date-time (with or without an offset)."""
    return parse_datetime(text) is not None


def is_date(text: str) -> bool:
    """Whether ``text`` is a calendar date ``YYYY-MM-DD``."""
    if _DATE.fullmatch(text) is None:
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def revision_date(revision: str) -> str:
    """The date part of a revision (``2026-07-15.pre`` → ``2026-07-15``), comparable as text."""
    return revision[:10]


def max_event_properties(revision: str) -> int:
    """The top-level event property limit at ``revision`` (see the revision table)."""
    return rules_at(revision_date(revision)).max_event_properties


def earliest_event_epoch(revision: str) -> float:
    """The start of the year an event time must come after at ``revision``."""
    year = rules_at(revision_date(revision)).earliest_event_year
    return datetime(year, 1, 1, tzinfo=UTC).timestamp()


def check_event_time(text: str, revision: str, now: float, event_ptr: str) -> int:
    """Validate the ``time`` of the event at ``event_ptr``; return it as whole epoch seconds."""
    ptr = f"{event_ptr}/time"
    moment = parse_datetime(text)
    if moment is None:
        raise invalid("'time' must be an ISO 8601 date-time string.", ptr)
    epoch = moment.timestamp()
    floor = earliest_event_epoch(revision)
    if epoch < floor:
        year = datetime.fromtimestamp(floor, UTC).year
        raise invalid(f"'time' must be after the year {year}.", ptr)
    if epoch > now + YEAR_SECONDS:
        raise invalid("'time' can only be up to 1 year in the future.", ptr)
    return int(epoch)


def check_past(text: str, now: float, ptr: str) -> None:
    """Validate a ``consented_at`` that must lie in the past."""
    moment = parse_datetime(text)
    if moment is None or moment.timestamp() > now:
        raise invalid("'consented_at' must be a date-time in the past.", ptr)


def check_metric_name(name: str, ptr: str) -> None:
    """A metric name is non-empty and under 128 characters."""
    if not name.strip():
        raise invalid("'name' must not be empty.", ptr)
    if len(name) > MAX_METRIC_NAME:
        raise invalid(f"'name' must be at most {MAX_METRIC_NAME} characters.", ptr)


def check_currency(code: str, ptr: str) -> None:
    """``value_currency`` is a 3-letter upper-case ISO 4217 code."""
    if CURRENCY.fullmatch(code) is None:
        raise invalid("'value_currency' must be a 3-letter ISO 4217 currency code.", ptr)


def check_properties(props: dict[str, object], revision: str, ptr: str) -> None:
    """Event property limits: key count, string size, array length and nesting depth."""
    limit = max_event_properties(revision)
    if len(props) > limit:
        raise invalid(f"'properties' must not exceed {limit} properties.", ptr)
    try:
        _check_tree(props, 1)
    except _LimitError as fault:
        path = "".join(f"/{escape(token)}" for token in reversed(fault.tokens))
        raise invalid(fault.detail, ptr + path) from None


class _LimitError(Exception):
    # Pointers are built only on failure; tokens are collected innermost first.
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.tokens: list[str] = []


def _check_tree(value: dict[str, object] | list[object], depth: int) -> None:
    if depth > MAX_NESTING:
        raise _LimitError(f"Properties must not be nested more than {MAX_NESTING} levels.")
    if isinstance(value, list) and len(value) > MAX_ARRAY_ITEMS:
        raise _LimitError(f"Arrays must not exceed {MAX_ARRAY_ITEMS} items.")
    pairs = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in pairs:
        try:
            _check_leaf(item, depth)
        except _LimitError as fault:
            fault.tokens.append(str(key))
            raise


def _check_leaf(item: object, depth: int) -> None:
    if isinstance(item, str):
        # Why: at most 4 bytes per character, so short strings skip the encode.
        if len(item) * 4 > MAX_STRING_BYTES and len(item.encode()) > MAX_STRING_BYTES:
            raise _LimitError("Strings must not be larger than 100 KB.")
    elif isinstance(item, dict | list):
        _check_tree(item, depth + 1)
