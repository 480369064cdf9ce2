"""The mapping playground: a pasted mParticle batch, mapped as ``map`` maps it; nothing is sent.

The lines are ``map``'s own (``delivery.batch_requests.map_lines``): requests, then drops and
warnings with their reasons. Emails and phones are masked unless the operator asks to see them.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mparticle_klaviyo.config import Config
from mparticle_klaviyo.console.html import PREFIX, csrf_field, esc
from mparticle_klaviyo.console.mask import mask
from mparticle_klaviyo.delivery.batch_requests import map_lines
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.jobs.inputs import InputItem, map_item
from mparticle_klaviyo.mparticle.decode import decode_document

# The largest batch the playground maps (a bulk request's worth is far more than a person pastes).
MAX_INPUT_BYTES = 1024 * 1024


def mapped_lines(raw: bytes, config: Config, connection: str) -> list[dict[str, Any]]:
    """``map``'s lines for a pasted document, or one error line naming what to fix."""
    chosen = config.connections.get(connection)
    if chosen is None:
        return [{"kind": "error", "message": f"no connection {connection!r} in the config"}]
    lines: list[dict[str, Any]] = []
    try:
        for number, batch in enumerate(decode_document(raw)):
            lines += map_lines(map_item(InputItem("pasted", number, batch=batch), chosen, time.time() * 1000))
    except InputError as error:
        return [{"kind": "error", **error.to_json()}]
    return lines


def form(config: Config, csrf: str, pasted: str = "", connection: str = "", reveal: bool = False) -> str:
    """The paste form: the batch, the connection, whether to show personal data."""
    options = "".join(
        f"<option{' selected' if name == connection else ''}>{esc(name)}</option>"
        for name in sorted(config.connections)
    )
    return (
        f'<form method=post action="{PREFIX}/playground" class=playground>{csrf_field(csrf)}'
        f"<label>Connection <select name=connection>{options}</select></label>"
        f"<label for=batch>mParticle batch (JSON: a batch, an array of batches, or a Firehose message)</label>"
        f"<textarea id=batch name=batch rows=14 spellcheck=false required>{esc(pasted)}</textarea>"
        f"<label><input type=checkbox name=reveal value=yes{' checked' if reveal else ''}> "
        "show emails and phone numbers</label>"
        "<p class=muted>Nothing is sent to Klaviyo and nothing is stored.</p><button>Map</button></form>"
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
