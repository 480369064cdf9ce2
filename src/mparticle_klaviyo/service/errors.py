"""Error answers of the ingest API: mParticle's Events API error shape plus a JSON pointer."""

from __future__ import annotations

from aiohttp import web


class PayloadTooLargeError(Exception):
    """A body, batch or bulk array over the configured limits (HTTP 413)."""

    def __init__(self, message: str, pointer: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.pointer = pointer


def error_response(status: int, code: str, message: str, pointer: str | None = None) -> web.Response:
    """``{"errors": [{"code", "message", "pointer"}]}`` with ``status``."""
    error: dict[str, str] = {"code": code, "message": message}
    if pointer is not None:
        error["pointer"] = pointer
    return web.json_response({"errors": [error]}, status=status)
