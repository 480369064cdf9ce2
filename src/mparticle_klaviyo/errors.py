"""The project's error hierarchy: every error a user can cause names what to fix."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


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


def validation_message(error: Mapping[str, Any]) -> str:
    """The message of one pydantic error (``ValidationError.errors()`` item), in our words.

    For our own validators (``value_error``, ``assertion_error``) it is the message of the
    exception we raised, taken from the error's context rather than cut out of pydantic's
    wording; other types keep pydantic's message, which is only displayed.
    """
    raised = (error.get("ctx") or {}).get("error")
    if error.get("type") in ("value_error", "assertion_error") and raised is not None:
        return str(raised)
    return str(error.get("msg", "invalid value"))
