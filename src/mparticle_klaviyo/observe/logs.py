"""Structured JSON logs on stderr, one object per line.

Log records carry connection names, counts, reasons and ids, never keys, tokens, emails or
phones; ``tests/service/test_secrets.py`` greps the output of a real run for the secrets.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec

_encoder = msgspec.json.Encoder(enc_hook=repr)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...extra fields}``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a JSON line."""
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _encoder.encode(line).decode()


class HttpLibraryRedaction(logging.Filter):
    """aiohttp's own error records keep the exception's type and length, never its text.

    Its parser errors quote the offending request line or header (an over-long
    ``Authorization: Token ...`` line among them), so that text must not reach a log.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite records of aiohttp's loggers that carry an exception; keep every record."""
        if not record.name.startswith("aiohttp") or not record.exc_info:
            return True
        error = record.exc_info[1]
        record.msg = "bad HTTP request"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.error = type(error).__name__
        record.code = getattr(error, "code", None)
        record.length = len(str(error))
        return True


def configure_logging(level: str = "info") -> None:
    """Send this package's logs (and aiohttp's errors) to stderr as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(HttpLibraryRedaction())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
