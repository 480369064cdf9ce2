"""The project's error hierarchy: every error a user can cause names what to fix."""

from __future__ import annotations

import re

_MSGSPEC_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]|(\[\.\.\.\])")
_MISSING_FIELD = re.compile(r"^Object missing required field `(?P<field>[^`]+)`")


class MparticleKlaviyoError(Exception):
    """Root of every error this package raises on purpose."""


class InputError(MparticleKlaviyoError):
    """Input that cannot be decoded or is not what mParticle sends; ``pointer`` locates it."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"{pointer or '(document)'}: {message}")
        self.pointer = pointer
        self.message = message

    def to_json(self) -> dict[str, str]:
        """The error as a JSON object: ``{"pointer": ..., "message": ...}``."""
        return {"pointer": self.pointer, "message": self.message}


class ConfigError(MparticleKlaviyoError):
    """A configuration file or environment with one or more problems, one message each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def escape_pointer_token(token: str) -> str:
    """Escape one JSON pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def join_pointer(*tokens: str | int) -> str:
    """Build a JSON pointer from reference tokens, e.g. ``("events", 0)`` -> ``/events/0``."""
    return "".join("/" + escape_pointer_token(str(t)) for t in tokens)


def input_error_from_msgspec(exc: Exception, prefix: str = "") -> InputError:
    """Turn a msgspec decode/validation error into an InputError with a JSON pointer."""
    text = str(exc)
    match = _MSGSPEC_PATH.search(text)
    pointer = prefix
    in_map_value = False
    if match:
        text = text[: match.start()]
        for key, index, any_key in _PATH_PART.findall(match.group("path")):
            if any_key:
                # msgspec does not say which map key held the bad value: point at the map itself,
                # since any deeper part would name a place that does not exist.
                in_map_value = True
                break
            pointer += "/" + escape_pointer_token(key or index)
    missing = _MISSING_FIELD.match(text)
    if missing and in_map_value:
        return InputError(pointer, f"a value in this object: required field {missing.group('field')!r} is missing")
    if missing:
        pointer += "/" + escape_pointer_token(missing.group("field"))
        return InputError(pointer, "required field is missing")
    message = _expected_message(text)
    return InputError(pointer, f"a value in this object: {message}" if in_map_value else message)


def _expected_message(text: str) -> str:
    """Reword msgspec's terse messages for people who never heard of msgspec."""
    text = text.replace("`", "")
    if text.startswith("JSON is malformed"):
        return "malformed JSON: " + text.removeprefix("JSON is malformed: ")
    if text.startswith("Input data was truncated"):
        return "malformed JSON: the document ends early"
    return text
