"""JSON log lines on stderr: one object per record, extra fields kept, exceptions included."""

from __future__ import annotations

import json
import logging
import sys

from mparticle_klaviyo.observe.logs import JsonFormatter
from mparticle_klaviyo.secret import Secret


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("mparticle_klaviyo.serve", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_a_record_is_one_json_line_with_time_level_logger_and_message() -> None:
    line = JsonFormatter().format(record("serving %s", "now"))
    parsed = json.loads(line)
    assert "\n" not in line
    assert (parsed["level"], parsed["logger"], parsed["message"]) == ("info", "mparticle_klaviyo.serve", "serving now")
    assert parsed["time"].endswith("Z")


def test_extra_fields_become_json_fields() -> None:
    parsed = json.loads(JsonFormatter().format(record("serving", url="http://127.0.0.1:1", connections=["a"])))
    assert (parsed["url"], parsed["connections"]) == ("http://127.0.0.1:1", ["a"])


def test_fields_json_cannot_hold_are_written_as_their_repr() -> None:
    parsed = json.loads(JsonFormatter().format(record("key", key=Secret("pk_live_123"))))
    assert parsed["key"] == "Secret('***')"


def test_an_exception_is_included_with_its_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        made = record("failed")
        made.exc_info = sys.exc_info()
    parsed = json.loads(JsonFormatter().format(made))
    assert "RuntimeError: boom" in parsed["exception"]
