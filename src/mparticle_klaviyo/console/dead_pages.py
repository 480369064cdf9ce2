"""Dead letters in the browser: a filtered list, one job's detail, redrive and purge.

Redrive and purge take two POSTs (each with the CSRF token): the first shows what would change
and asks; only the second, with ``confirm=yes``, changes anything. Stored inputs, Klaviyo's
answers and the requests a redrive would make are shown with emails and phones masked, unless the
operator follows one job's "Show personal data" link (``?reveal=1``, that page only; logged).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from mparticle_klaviyo.config import Config
from mparticle_klaviyo.console.html import PREFIX, csrf_field, esc, table
from mparticle_klaviyo.console.mask import mask, mask_text, masking
from mparticle_klaviyo.console.reveal import reveal_switch
from mparticle_klaviyo.delivery.batch_requests import shown_path
from mparticle_klaviyo.delivery.dead_letters import dlq_log, job_fields, job_view, redrive_logged, would_send
from mparticle_klaviyo.store.async_store import AsyncJobStore
from mparticle_klaviyo.store.base import DeadFilter, Job, JobStore

PAGE = 50
# A selection names at most this many jobs (one page's worth, with room).
MAX_SELECTED = 500
ACTIONS = {"redrive": "Redrive", "purge": "Purge"}


class FilterError(ValueError):
    """A filter the form cannot express (its message is shown to the operator)."""


def dead_filter(query: Mapping[str, str]) -> DeadFilter:
    """The store filter of a list's query: connection, and a reason or an HTTP status."""
    connection = query.get("connection", "").strip() or None
    reason = query.get("reason", "").strip() or None
    status = query.get("status", "").strip()
    if status:
        if reason or not status.isdigit() or len(status) != 3:
            raise FilterError("give an HTTP status of three digits, or a reason, not both")
        reason = f"http_{status}"
    return DeadFilter(connection=connection, reason=reason)


def selected_ids(values: list[str]) -> tuple[int, ...]:
    """The checked job ids of a form (non-numbers refused)."""
    if len(values) > MAX_SELECTED or not all(v.isdigit() for v in values):
        raise FilterError(f"select at most {MAX_SELECTED} jobs by id")
    return tuple(int(v) for v in values)


def filter_form(config: Config, query: Mapping[str, str]) -> str:
    """The GET form that filters the list."""
    chosen = query.get("connection", "")
    options = '<option value="">all</option>' + "".join(
        f"<option{' selected' if name == chosen else ''}>{esc(name)}</option>" for name in sorted(config.connections)
    )
    return (
        f'<form method=get action="{PREFIX}/dead-letters" class=filters>'
        f"<label>Connection <select name=connection>{options}</select></label>"
        f'<label>Reason <input name=reason value="{esc(query.get("reason", ""))}" placeholder="http_400"></label>'
        f'<label>HTTP status <input name=status value="{esc(query.get("status", ""))}" size=4></label>'
        "<button>Filter</button></form>"
    )


def list_body(jobs: list[Job], where: DeadFilter, query: Mapping[str, str], csrf: str, offset: int) -> str:
    """The list with a checkbox per job, and the actions for the selection or the whole filter."""
    rows = [
        [
            f'<input type=checkbox name=id value="{job.id}" aria-label="select job {job.id}">',
            f'<a href="{PREFIX}/dead-letters/{job.id}">{job.id}</a>',
            esc(job.connection),
            esc(job.kind),
            esc(job.dead_reason or ""),
            esc(job.attempts),
            esc(mask_text(job.last_error or "")[:160]),
        ]
        for job in jobs[:PAGE]
    ]
    listed = table(("", "id", "connection", "kind", "reason", "attempts", "Klaviyo's answer"), rows, "no dead letters")
    buttons = "".join(
        f'<button name=action value="{a}">{label} selected</button>'
        f'<button name=action value="{a}" formaction="{PREFIX}/dead-letters/confirm?scope=filter">'
        f"{label} all matching</button>"
        for a, label in ACTIONS.items()
    )
    form = (
        f'<form method=post action="{PREFIX}/dead-letters/confirm?scope=selected" id=dead-form>'
        f"{csrf_field(csrf)}{_filter_fields(where)}{_select_all(jobs)}{listed}<div class=actions>{buttons}</div></form>"
    )
    return form + _pager(query, offset, more=len(jobs) > PAGE)


def _select_all(jobs: list[Job]) -> str:
    return "<label><input type=checkbox id=select-all> select all on this page</label>" if jobs else ""


def _filter_fields(where: DeadFilter) -> str:
    fields = {"connection": where.connection or "", "reason": where.reason or ""}
    return "".join(f'<input type=hidden name="{k}" value="{esc(v)}">' for k, v in fields.items())


def _pager(query: Mapping[str, str], offset: int, *, more: bool) -> str:
    links = []
    if offset > 0:
        links.append(_page_link(query, max(0, offset - PAGE), "← newer"))
    if more:
        links.append(_page_link(query, offset + PAGE, "older →"))
    return f"<p class=pager>{' '.join(links)}</p>" if links else ""


def _page_link(query: Mapping[str, str], offset: int, label: str) -> str:
    params = urlencode({**{k: v for k, v in query.items() if k != "offset"}, "offset": offset})
    return f'<a href="{PREFIX}/dead-letters?{esc(params)}">{esc(label)}</a>'


def detail_body(job: Job, config: Config, csrf: str, reveal: bool = False) -> str:
    """One dead job: summary, Klaviyo's answer, the stored input and today's requests, masked unless ``reveal``."""
    shown = masking(reveal)
    view = shown(job_view(job))
    stored = view.pop("input")
    # The key is left out: it is built from the person's identities (only the store needs it).
    summary = table(("field", "value"), [[esc(k), esc(v)] for k, v in view.items() if k not in ("detail", "key")])
    answer = f"<pre class=answer>{esc(shown(job.last_error or '(none)'))}</pre>"
    actions = "".join(f'<button name=action value="{a}">{label} this job</button>' for a, label in ACTIONS.items())
    form = (
        f'<form method=post action="{PREFIX}/dead-letters/confirm?scope=selected">{csrf_field(csrf)}'
        f'<input type=hidden name=id value="{job.id}"><div class=actions>{actions}</div></form>'
    )
    return (
        f"{summary}{form}{reveal_switch(f'{PREFIX}/dead-letters/{job.id}', reveal)}<h2>Klaviyo's answer</h2>{answer}"
        f"<div class=sides><section><h2>Stored mParticle input</h2><pre>{esc(_json(stored))}</pre></section>"
        f"<section><h2>What today's code would send</h2>{_would_send(job, config, shown)}</section></div>"
    )


def _would_send(job: Job, config: Config, shown: Callable[[Any], Any] = mask) -> str:
    sent = would_send(job, config.connections.get(job.connection), time.time() * 1000)
    if isinstance(sent, str):
        return f"<p>{esc(sent)}</p>"
    return (
        "".join(f"<h3>{esc(r.method)} {esc(shown_path(r))}</h3><pre>{esc(_json(shown(r.body)))}</pre>" for r in sent)
        or "<p>no request</p>"
    )


def _json(document: object) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, default=str)


async def count_matching(store: AsyncJobStore, where: DeadFilter) -> int:
    """How many dead jobs ``where`` matches (read page by page)."""

    def count(jobs: JobStore) -> int:
        total = 0
        while page := jobs.dead(where, 1000, total):
            total += len(page)
        return total

    return await store.on_thread(count)


def confirm_body(action: str, where: DeadFilter, count: int, csrf: str) -> str:
    """The confirmation step: what would change, and the button that changes it."""
    ids = "".join(f'<input type=hidden name=id value="{i}">' for i in where.ids or ())
    scope = "selected" if where.ids else "filter"
    what = f"{count} dead job(s)" + _described(where)
    warning = " They are deleted for good." if action == "purge" else " Delivery maps their input with today's code."
    return (
        f"<p class=confirm>{esc(ACTIONS[action])} {esc(what)}?{esc(warning)}</p>"
        f'<form method=post action="{PREFIX}/dead-letters/apply?scope={scope}">{csrf_field(csrf)}'
        f'<input type=hidden name=action value="{esc(action)}"><input type=hidden name=confirm value=yes>'
        f"{_filter_fields(where)}{ids}<button class=danger>{esc(ACTIONS[action])} {count} job(s)</button> "
        f'<a href="{PREFIX}/dead-letters">Cancel</a></form>'
    )


def _described(where: DeadFilter) -> str:
    parts = [
        f"connection {where.connection}" if where.connection else "",
        f"reason {where.reason}" if where.reason else "",
    ]
    shown = ", ".join(p for p in parts if p)
    return f" ({shown})" if shown else ""


async def apply(store: AsyncJobStore, action: str, where: DeadFilter) -> int:
    """Redrive or purge what ``where`` matches, logged like the ``dlq`` commands; how many."""
    if action == "redrive":
        return await store.on_thread(lambda jobs: redrive_logged(jobs, where, time.time()))

    def purge(jobs: JobStore) -> int:
        sample = [job.id for job in jobs.dead(where, 20)]
        count = jobs.purge(where)
        if count:
            dlq_log.info("purged", extra={**job_fields(sample), "jobs": count, "connection": where.connection})
        return count

    return await store.on_thread(purge)


def result_page_body(action: str, count: int) -> str:
    """What was done, and the way back."""
    verb = "Redrove" if action == "redrive" else "Purged"
    back = f'<p><a href="{PREFIX}/dead-letters">Back to the dead letters</a></p>'
    return f"<p class=done role=status>{verb} {count} job(s).</p>{back}"


def bad_request(message: str) -> web.Response:
    """A refused form, said in a sentence."""
    from mparticle_klaviyo.console.html import html_response

    return html_response(f"<!doctype html><title>Refused</title><p>{esc(message)}</p>", status=400)
