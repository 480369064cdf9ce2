"""The Live stream: the latest batches in and requests out, each with its outcome, and one side by side.

Entries come from the in-process rings of ``observe.live``, filled by ingest and delivery while
the console is on. The list polls ``/console/live/rows`` (the same filters) every 2 s; an entry's
page shows the mParticle input beside the Klaviyo request. Emails and phones are masked unless
the operator asks (``?reveal=1``, logged); Firehose settings, which hold the sender's Klaviyo
key, and any key, token or secret are never shown; nor are request headers (none are kept).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from mparticle_klaviyo.config import Config
from mparticle_klaviyo.console import playground
from mparticle_klaviyo.console.html import PREFIX, esc, html_response, page, table
from mparticle_klaviyo.console.mask import mask, mask_text
from mparticle_klaviyo.console.reveal import reveal_switch, revealed
from mparticle_klaviyo.jobs.plan import decode_payload
from mparticle_klaviyo.observe.live import IN, OUT, SHOWN_ITEMS, BatchIn, Entry, Kept, RequestOut, Verdict

if TYPE_CHECKING:
    from mparticle_klaviyo.console.app import Console

# Rows the list shows (the rings keep up to 200 of each kind).
SHOWN_ROWS = 100
KINDS = {IN: "batches in", OUT: "requests out"}
# Keys whose values are never shown: Firehose settings carry the sender's Klaviyo key.
_SECRET_KEY = re.compile(r"settings|api_?key|token|secret|password|authori[sz]ation", re.IGNORECASE)
_SECRET_TEXT = re.compile(
    r'("[^"]*(?:settings|api_?key|token|secret|password|authori[sz]ation)[^"]*"\s*:\s*)("[^"]*"|\{[^}]*\})',
    re.IGNORECASE,
)
HIDDEN = "(not shown)"


def _console(request: web.Request) -> Console:
    from mparticle_klaviyo.console.app import CONSOLE

    return request.app[CONSOLE]


def _csrf() -> str:
    from mparticle_klaviyo.console.pages import SESSION

    return SESSION.get().csrf


def chosen(query: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The connection and kind (``in``/``out``) a list's query asks for; None: all."""
    kind = query.get("kind", "").strip()
    return query.get("connection", "").strip() or None, kind if kind in KINDS else None


async def live_page(request: web.Request) -> web.StreamResponse:
    """``GET /console/live``: the filter form and the newest entries, refreshed by polling."""
    console = _console(request)
    connection, kind = chosen(request.query)
    params = urlencode({k: v for k, v in (("connection", connection), ("kind", kind)) if v})
    source = f"{PREFIX}/live/rows" + (f"?{params}" if params else "")
    body = (
        filter_form(console.config, connection, kind)
        + "<p class=muted>Newest first; refreshed every 2 s (paused while the keyboard is in the list)."
        " Open an entry to see the mParticle input beside the Klaviyo request.</p>"
        "<p><label><input type=checkbox id=live-pause> pause refreshing</label></p>"
        f'<div id=live-stream data-src="{esc(source)}">{rows(console.live.entries(kind, connection))}</div>'
    )
    return page("Live stream", body, csrf=_csrf(), active="live")


async def live_rows(request: web.Request) -> web.StreamResponse:
    """``GET /console/live/rows``: the list's HTML fragment (what the page polls)."""
    connection, kind = chosen(request.query)
    return html_response(rows(_console(request).live.entries(kind, connection)))


def filter_form(config: Config, connection: str | None, kind: str | None) -> str:
    """The GET form: connection and kind."""
    names = '<option value="">all</option>' + "".join(
        f"<option{' selected' if n == connection else ''}>{esc(n)}</option>" for n in sorted(config.connections)
    )
    kinds = '<option value="">both</option>' + "".join(
        f'<option value="{k}"{" selected" if k == kind else ""}>{esc(label)}</option>' for k, label in KINDS.items()
    )
    return (
        f'<form method=get action="{PREFIX}/live" class=filters>'
        f"<label>Connection <select name=connection>{names}</select></label>"
        f"<label>Show <select name=kind>{kinds}</select></label><button>Filter</button></form>"
    )


def rows(entries: list[Entry]) -> str:
    """The entries as a table, newest first, each linking to its side-by-side page."""
    cells = [_row(entry) for entry in entries[:SHOWN_ROWS]]
    headers = ("time (UTC)", "in/out", "connection", "input / endpoint", "events", "outcome", "detail")
    shown = f", the newest {SHOWN_ROWS} shown" if len(entries) > SHOWN_ROWS else ""
    return f"<p class=muted>{len(entries)} kept{shown}</p>" + table(headers, cells, "nothing yet: send some events")


def _row(entry: Entry) -> list[str]:
    clock = _clock(entry.at)
    link = f'<a href="{PREFIX}/live/{entry.id}" aria-label="{clock}, entry {entry.id}">{clock}</a>'
    outcome = entry.outcome if isinstance(entry, BatchIn) else entry.verdict.outcome
    where = entry.source if isinstance(entry, BatchIn) else entry.endpoint or "(nothing sent)"
    arrow = "in" if isinstance(entry, BatchIn) else "out"
    return [
        link,
        f'<span class="kind {arrow}">{arrow}</span>',
        esc(entry.connection or "(unknown)"),
        esc(where),
        esc(entry.events),
        f'<span class="outcome {esc(outcome)}">{esc(outcome)}</span>',
        esc(mask_text(_detail(entry))[:200]),
    ]


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}"


def _detail(entry: Entry) -> str:
    if isinstance(entry, BatchIn):
        return entry.detail
    shape = f"{entry.jobs} job(s), {entry.profiles} profile(s)"
    return f"{shape}; {verdict_text(entry.verdict)}" if entry.verdict.outcome != "delivered" else shape


def verdict_text(verdict: Verdict) -> str:
    """A verdict in words: the outcome, why, the status and when the jobs are due again."""
    words = [verdict.reason]
    if verdict.status and f"{verdict.status}" not in verdict.reason:
        words.append(f"HTTP {verdict.status}")
    if verdict.due is not None:
        words.append(f"next due {time.strftime('%H:%M:%S', time.gmtime(verdict.due))} UTC")
    if verdict.note:
        words.append(verdict.note)
    return ", ".join(w for w in words if w) or verdict.outcome


async def live_entry(request: web.Request) -> web.StreamResponse:
    """``GET /console/live/{id}``: one entry, the mParticle input beside the Klaviyo request."""
    console = _console(request)
    entry_id = int(request.match_info["id"])
    entry = console.live.find(entry_id)
    if entry is None:
        body = f'<p>Entry {entry_id} is no longer kept.</p><p><a href="{PREFIX}/live">Back to the Live stream</a></p>'
        return page("No such entry", body, csrf=_csrf(), active="live")
    reveal = revealed(request, live_entry=entry_id)
    sides = _batch_sides(entry, console.config, reveal) if isinstance(entry, BatchIn) else _request_sides(entry, reveal)
    title = f"Batch in {entry.id}" if isinstance(entry, BatchIn) else f"Request out {entry.id}"
    switch = reveal_switch(f"{PREFIX}/live/{entry.id}", reveal)
    return page(title, _summary(entry) + switch + sides, csrf=_csrf(), active="live")


def _summary(entry: Entry) -> str:
    fields: list[tuple[str, object]] = [("time", _clock(entry.at) + " UTC"), ("connection", entry.connection or "")]
    if isinstance(entry, BatchIn):
        fields += [("input", entry.source), ("events", entry.events), ("outcome", entry.outcome)]
        fields += [("detail", entry.detail)]
    else:
        fields += [("endpoint", entry.endpoint or "(nothing sent)"), ("jobs", entry.jobs), ("events", entry.events)]
        fields += [("profiles", entry.profiles), ("outcome", entry.verdict.outcome)]
        fields += [("detail", verdict_text(entry.verdict))]
    return table(("field", "value"), [[esc(k), esc(mask_text(str(v)))] for k, v in fields])


def _batch_sides(entry: BatchIn, config: Config, reveal: bool) -> str:
    note = " (the first batch only: the request was too large to keep)" if entry.first_only else ""
    left = f"<h2>mParticle input{esc(note)}</h2>{_body(entry.body, reveal)}"
    return f"<div class=sides><section>{left}</section><section>{_would_map(entry, config, reveal)}</section></div>"


def _would_map(entry: BatchIn, config: Config, reveal: bool) -> str:
    """The Klaviyo requests the batch maps to (delivery sends them later: see the requests out)."""
    heading = "<h2>Klaviyo requests it maps to</h2>"
    if entry.outcome == "refused" or entry.body.data is None or entry.connection not in config.connections:
        return heading + "<p class=muted>None: nothing of this request was queued.</p>"
    if entry.first_only:
        return heading + "<p class=muted>Not mapped here: the request was too large to keep whole.</p>"
    lines = playground.mapped_lines(entry.body.data, config, entry.connection)
    requests = [line for line in lines if line.get("kind") == "request"]
    shown = "".join(_pre(line, reveal) for line in requests) or "<p class=muted>no request</p>"
    return heading + "<p class=muted>As today's code maps it; delivery sends them (see the requests out).</p>" + shown


def _request_sides(entry: RequestOut, reveal: bool) -> str:
    more = f" (the first {len(entry.inputs)} of {entry.jobs} jobs)" if entry.jobs > len(entry.inputs) else ""
    inputs = "".join(
        f"<h3>Job {i.job_id} ({esc(i.job_kind)})</h3>{_body(i.payload, reveal, stored=True)}" for i in entry.inputs
    )
    requests = "".join(f"<h3>{esc(endpoint)}</h3>{_body(body, reveal)}" for endpoint, body in entry.requests)
    left = f"<h2>mParticle input{esc(more)}</h2>{inputs or '<p class=muted>none kept</p>'}"
    right = f"<h2>Klaviyo request</h2>{requests or '<p class=muted>nothing was sent</p>'}"
    if entry.requests and max(entry.jobs, entry.events) > SHOWN_ITEMS:
        right += f"<p class=muted>Long lists are cut to their first {SHOWN_ITEMS} items.</p>"
    return f"<div class=sides><section>{left}</section><section>{right}</section></div>"


def _body(kept: Kept, reveal: bool, *, stored: bool = False) -> str:
    """A kept body, pretty-printed and masked; its size when it was too large to keep."""
    if kept.data is None:
        return f"<p class=muted>{'not read' if not kept.size else f'{kept.size} bytes: too large to keep'}</p>"
    if stored:
        return _pre(_stored_input(kept.data), reveal)
    try:
        document = json.loads(kept.data)
    except ValueError:
        text = _SECRET_TEXT.sub(lambda m: f'{m.group(1)}"{HIDDEN}"', kept.data.decode("utf-8", "replace"))
        return f"<pre>{esc(text if reveal else mask_text(text))}</pre>"
    return _pre(document, reveal)


def _stored_input(payload: bytes) -> object:
    """A job's stored input as ``dlq show`` shows it."""
    try:
        return msgspec.to_builtins(msgspec.structs.replace(decode_payload(payload), settings=None))
    except msgspec.DecodeError as error:
        return {"undecodable": str(error), "bytes": len(payload)}


def _pre(document: object, reveal: bool) -> str:
    shown = redacted(document)
    return f"<pre>{esc(json.dumps(shown if reveal else mask(shown), indent=2, ensure_ascii=False))}</pre>"


def redacted(document: Any) -> Any:
    """``document`` with the value of every key that may hold a credential replaced."""
    if isinstance(document, dict):
        return {k: HIDDEN if v is not None and _SECRET_KEY.search(str(k)) else redacted(v) for k, v in document.items()}
    if isinstance(document, list):
        return [redacted(v) for v in document]
    return document


def add_routes(app: web.Application) -> None:
    """The Live stream's routes (relative to the console's prefix)."""
    app.router.add_get("/live", live_page, allow_head=False)
    app.router.add_get("/live/rows", live_rows, allow_head=False)
    app.router.add_get(r"/live/{id:\d+}", live_entry, allow_head=False)
