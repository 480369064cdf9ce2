"""The mapping playground: a pasted or uploaded mParticle batch file, mapped as ``map`` maps it; nothing is sent.

The input is read as ``map FILE`` reads a file (a batch, an array of batches, a Firehose message,
or JSON lines of them) and the lines are ``map``'s own (``delivery.batch_requests.map_lines``):
requests, then drops and warnings with their reasons, errors with their location and JSON
pointer. An upload is read in the browser into the paste box (``console.js``), so the server has
one path and one byte budget for both. Emails and phones are masked unless the operator asks.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mparticle_klaviyo.config import Config, Connection
from mparticle_klaviyo.console.html import PREFIX, csrf_field, esc
from mparticle_klaviyo.console.mask import mask
from mparticle_klaviyo.delivery.batch_requests import map_lines
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.inputs import InputItem, map_item
from mparticle_klaviyo.mparticle.files import read_bytes

# The largest batch the playground maps (a bulk request's worth is far more than a person pastes).
MAX_INPUT_BYTES = 1024 * 1024
MAX_NAME = 120


def mapped_lines(raw: bytes, config: Config, connection: str, source: str = "pasted") -> list[dict[str, Any]]:
    """``map``'s lines for a pasted or uploaded file named ``source``; an error line names what to fix."""
    chosen = config.connections.get(connection)
    if chosen is None:
        return [{"kind": "error", "message": f"no connection {connection!r} in the config"}]
    lines: list[dict[str, Any]] = []
    now_ms, number = time.time() * 1000, 0
    for record in read_bytes(source, raw):
        for batch in record.batches or ():
            item = InputItem(record.location, number, batch=batch, line=record.line)
            lines += _batch_lines(item, chosen, now_ms)
            number += 1
        if record.error is not None:
            lines.append(_error_line(record.location, record.error))
    return lines


def _batch_lines(item: InputItem, connection: Connection, now_ms: float) -> list[dict[str, Any]]:
    """One batch's lines as ``map`` prints them; an invalid Firehose setting is an error line."""
    try:
        return map_lines(map_item(item, connection, now_ms))
    except InputError as error:
        return [_error_line(item.location, error)]


def _error_line(location: str, error: InputError) -> dict[str, Any]:
    return {"kind": "error", "location": location, **error.to_json()}


def source_name(value: str) -> str:
    """The uploaded file's name for error locations (``pasted`` when there is none)."""
    # Only a label in the results: path parts and control characters are of no use there.
    name = "".join(c for c in value.replace("\\", "/").rpartition("/")[2] if c.isprintable())
    return name[:MAX_NAME] or "pasted"


def too_large(raw: bytes) -> str | None:
    """Why the playground refuses ``raw`` (over its byte budget), or None."""
    if len(raw) <= MAX_INPUT_BYTES:
        return None
    return f"the batch file is {len(raw):,} bytes: the playground maps at most {MAX_INPUT_BYTES:,} bytes (1 MiB)"


def form(
    config: Config, csrf: str, pasted: str = "", connection: str = "", reveal: bool = False, source: str = ""
) -> str:
    """The form: the batch file (pasted, or loaded from a file), the connection, whether to show personal data."""
    options = "".join(
        f"<option{' selected' if name == connection else ''}>{esc(name)}</option>"
        for name in sorted(config.connections)
    )
    return (
        f'<form method=post action="{PREFIX}/playground" class=playground>{csrf_field(csrf)}'
        f"<label>Connection <select name=connection>{options}</select></label>"
        f"{_upload(source)}"
        "<label for=batch>mParticle batch file (JSON: a batch, an array of batches, a Firehose message,"
        " or JSON lines of them)</label>"
        f"<textarea id=batch name=batch rows=14 spellcheck=false required>{esc(pasted)}</textarea>"
        f"<label><input type=checkbox name=reveal value=yes{' checked' if reveal else ''}> "
        "show emails and phone numbers</label>"
        "<p class=muted>Nothing is sent to Klaviyo and nothing is stored.</p><button>Map</button></form>"
    )


def _upload(source: str) -> str:
    """The file picker: console.js reads the chosen file into the paste box (it has no name: never posted)."""
    return (
        "<div class=upload><label for=batch-file>Load a file (.json, .jsonl, .ndjson; at most 1 MiB)</label>"
        f'<input type=file id=batch-file accept=".json,.jsonl,.ndjson,.txt,application/json"'
        f' data-max-bytes="{MAX_INPUT_BYTES}" aria-describedby=file-status>'
        f'<input type=hidden name=source id=source value="{esc(source)}">'
        "<p id=file-status class=muted role=status aria-live=polite></p></div>"
    )


def results(lines: list[dict[str, Any]], reveal: bool) -> str:
    """The mapped lines: requests first, then drops, warnings and errors, each as ``map`` prints it."""
    shown = lines if reveal else mask(lines)
    counts = {kind: sum(1 for line in shown if line.get("kind") == kind) for kind in ("request", "error")}
    notices = len(shown) - counts["request"] - counts["error"]
    summary = f"{counts['request']} request(s), {notices} drop(s) or warning(s), {counts['error']} error(s)"
    items = "".join(
        f'<li class="line {esc(line.get("kind", ""))}"><pre>{esc(json.dumps(line, indent=2))}</pre></li>'
        for line in shown
    )
    return f"<h2>Result</h2><p id=summary role=status>{esc(summary)}</p><ol class=lines id=lines>{items}</ol>"
