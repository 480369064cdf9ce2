"""Personal data masked for display: emails and phone numbers, wherever they sit in a document."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

_EMAIL = re.compile(r"[^@\s\"']+@[^@\s\"']+\.[^@\s\"']+")
# Digits with the separators phone numbers are written with; 7 digits or more.
_PHONE = re.compile(r"\+?\d[\d\s().-]{5,}\d")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PHONE_KEYS = ("phone", "mobile", "sms")


def mask_email(email: str) -> str:
    """``jane.doe@example.com`` -> ``j***@e***.com``: enough to tell two apart, not to read one."""
    local, _, domain = email.partition("@")
    host, dot, tld = domain.rpartition(".")
    return f"{local[:1]}***@{host[:1]}***{dot}{tld}"


def mask_phone(phone: str) -> str:
    """``+15555550123`` -> ``+1******23``: country prefix and last two digits kept."""
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 4:
        return "***"
    return ("+" if phone.strip().startswith("+") else "") + digits[:1] + "*" * (len(digits) - 3) + digits[-2:]


def mask_text(text: str) -> str:
    """Every email and phone number in a string masked."""
    masked = _EMAIL.sub(lambda match: mask_email(match.group(0)), text)
    return _PHONE.sub(lambda match: mask_phone(match.group(0)) if _is_phone(match.group(0)) else match.group(0), masked)


def _is_phone(candidate: str) -> bool:
    """Phone-shaped and not a date: 7 to 15 digits (E.164's most)."""
    return 7 <= sum(c.isdigit() for c in candidate) <= 15 and not _DATE.fullmatch(candidate.strip())


def mask(document: Any, key: str = "") -> Any:
    """``document`` (JSON builtins) with emails and phones masked; values under phone keys wholly."""
    if isinstance(document, dict):
        return {k: mask(v, str(k)) for k, v in document.items()}
    if isinstance(document, list):
        return [mask(v, key) for v in document]
    if isinstance(document, str):
        if any(word in key.lower() for word in _PHONE_KEYS):
            return mask_phone(document)
        return mask_text(document)
    return document


def _shown(document: Any) -> Any:
    return document


def masking(reveal: bool) -> Callable[[Any], Any]:
    """``mask``, or the document unchanged once the operator deliberately asked to see personal data."""
    return _shown if reveal else mask
