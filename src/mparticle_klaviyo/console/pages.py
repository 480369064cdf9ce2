"""The console's pages: overview (and what it polls), dead letters, the mapping playground."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING

import msgspec
from aiohttp import web

from mparticle_klaviyo.console import dead_pages, playground
from mparticle_klaviyo.console.forms import FORM_BYTES, Form
from mparticle_klaviyo.console.html import PREFIX, esc, html_response, page, redirect
from mparticle_klaviyo.console.overview import fragment
from mparticle_klaviyo.console.reveal import revealed
from mparticle_klaviyo.console.sessions import Session
from mparticle_klaviyo.delivery.tenure import accounts_of
from mparticle_klaviyo.service.status import Status
from mparticle_klaviyo.store.base import DeadFilter

if TYPE_CHECKING:
    from mparticle_klaviyo.console.app import Console

FORM_LIMIT = FORM_BYTES
# The request's session and POST form, set by the guard middleware (each request is its own task).
SESSION: ContextVar[Session] = ContextVar("console_session")
FORM: ContextVar[Form] = ContextVar("console_form")


def _console(request: web.Request) -> Console:
    from mparticle_klaviyo.console.app import CONSOLE

    return request.app[CONSOLE]


def _csrf(request: web.Request) -> str:
    return SESSION.get().csrf


def _form(request: web.Request) -> Form:
    return FORM.get()


def login(error: str, status: int = 200) -> web.Response:
    """The login form (the only page without a session)."""
    shown = f"<p class=error role=alert>{esc(error)}</p>" if error else ""
    body = (
        f'{shown}<form method=post action="{PREFIX}/login" class=login>'
        "<label for=password>Console password</label>"
        "<input id=password name=password type=password autocomplete=current-password required autofocus>"
        "<button>Log in</button></form>"
    )
    response = page("Log in", body, csrf=None)
    response.set_status(status)
    return response


async def home(request: web.Request) -> web.StreamResponse:
    """``GET /console``: the overview."""
    return redirect(f"{PREFIX}/overview")


async def overview(request: web.Request) -> web.StreamResponse:
    """``GET /console/overview``: polls ``/overview/live`` (HTML) and ``/api/history`` (the chart's data)."""
    console = _console(request)
    status = await _status(console)
    body = (
        "<h2>Last hour: events in, events delivered, 429s (per second)</h2>"
        f'<figure><svg id=chart role=img aria-label="events per second, last hour" data-src="{PREFIX}/api/history"'
        ' viewBox="0 0 800 200" preserveAspectRatio=none></svg><figcaption id=legend></figcaption></figure>'
        f'<div id=live aria-live=polite data-src="{PREFIX}/overview/live">{fragment(status, console.me)}</div>'
    )
    return page("Overview", body, csrf=_csrf(request), active="overview")


async def overview_live(request: web.Request) -> web.StreamResponse:
    """``GET /console/overview/live``: the overview's live HTML fragment."""
    console = _console(request)
    return html_response(fragment(await _status(console), console.me))


async def _status(console: Console) -> Status:
    """``status``'s document, with the cluster: its accounts named as ``status`` names them."""
    accounts = accounts_of(console.config.connections.values())
    return await console.overview.status(accounts, console.config.service.account_lease_s)


async def history(request: web.Request) -> web.StreamResponse:
    """``GET /console/api/history``: per-second rates of the last hour, per connection."""
    console = _console(request)
    document = console.history.series(sorted(console.config.connections))
    return web.Response(body=msgspec.json.encode(document), content_type="application/json", headers=_json_headers())


def _json_headers() -> dict[str, str]:
    from mparticle_klaviyo.console.html import HEADERS

    return HEADERS


async def dead_letters(request: web.Request) -> web.StreamResponse:
    """``GET /console/dead-letters``: the filtered list."""
    console = _console(request)
    query = dict(request.query)
    try:
        where = dead_pages.dead_filter(query)
        offset = int(query.get("offset", "0") or 0)
    except ValueError as error:
        return dead_pages.bad_request(str(error))
    jobs = await console.store.dead(where, dead_pages.PAGE + 1, max(0, offset))
    body = dead_pages.filter_form(console.config, query) + dead_pages.list_body(
        jobs, where, query, _csrf(request), offset
    )
    return page("Dead letters", body, csrf=_csrf(request), active="dead-letters")


async def dead_letter(request: web.Request) -> web.StreamResponse:
    """``GET /console/dead-letters/{id}``: one dead job; ``?reveal=1`` shows its personal data (logged)."""
    console = _console(request)
    job_id = request.match_info["id"]
    found = await console.store.dead(DeadFilter(ids=(int(job_id),)), 1) if job_id.isdigit() else []
    if not found:
        return page("No such dead letter", f"<p>No dead job {esc(job_id)}.</p>", csrf=_csrf(request))
    body = dead_pages.detail_body(found[0], console.config, _csrf(request), revealed(request, dead_letter=found[0].id))
    return page(f"Dead letter {found[0].id}", body, csrf=_csrf(request), active="dead-letters")


def _chosen(request: web.Request) -> tuple[str, DeadFilter]:
    """The action and the jobs a redrive or purge form names (``FilterError`` when unclear)."""
    form = _form(request)
    action = form.get("action")
    if action not in dead_pages.ACTIONS:
        raise dead_pages.FilterError("choose redrive or purge")
    where = dead_pages.dead_filter({"connection": form.get("connection"), "reason": form.get("reason")})
    if request.query.get("scope") == "filter":
        return action, where
    ids = dead_pages.selected_ids(form.all("id"))
    if not ids:
        raise dead_pages.FilterError("select at least one job first")
    return action, msgspec.structs.replace(where, ids=ids)


async def confirm(request: web.Request) -> web.StreamResponse:
    """``POST /console/dead-letters/confirm``: what would change; nothing changes yet."""
    try:
        action, where = _chosen(request)
    except dead_pages.FilterError as error:
        return dead_pages.bad_request(str(error))
    count = await dead_pages.count_matching(_console(request).store, where)
    body = dead_pages.confirm_body(action, where, count, _csrf(request))
    return page("Confirm", body, csrf=_csrf(request), active="dead-letters")


async def apply(request: web.Request) -> web.StreamResponse:
    """``POST /console/dead-letters/apply``: redrive or purge, once confirmed."""
    if _form(request).get("confirm") != "yes":
        return dead_pages.bad_request("not confirmed")
    try:
        action, where = _chosen(request)
    except dead_pages.FilterError as error:
        return dead_pages.bad_request(str(error))
    console = _console(request)
    count = await dead_pages.apply(console.store, action, where)
    if action == "redrive":
        for name in console.config.connections:
            console.wake(name)  # the redriven jobs are due now: no need to wait for the next poll
    return page("Done", dead_pages.result_page_body(action, count), csrf=_csrf(request), active="dead-letters")


async def playground_page(request: web.Request) -> web.StreamResponse:
    """``GET /console/playground``: the paste form."""
    console = _console(request)
    first = min(console.config.connections, default="")
    return page(
        "Mapping playground",
        playground.form(console.config, _csrf(request), connection=first),
        csrf=_csrf(request),
        active="playground",
    )


async def playground_map(request: web.Request) -> web.StreamResponse:
    """``POST /console/playground``: the pasted or uploaded batch file mapped; nothing sent, nothing stored."""
    console, form = _console(request), _form(request)
    raw, connection, reveal = form.get("batch").encode(), form.get("connection"), form.get("reveal") == "yes"
    source = playground.source_name(form.get("source"))
    refused = playground.too_large(raw)
    if refused is not None:
        return dead_pages.bad_request(refused)
    lines = playground.mapped_lines(raw, console.config, connection, source)
    body = playground.form(
        console.config, _csrf(request), raw.decode(), connection, reveal, "" if source == "pasted" else source
    ) + playground.results(lines, reveal)
    return page("Mapping playground", body, csrf=_csrf(request), active="playground")


def add_routes(app: web.Application) -> None:
    """The pages' routes (relative to the console's prefix)."""
    app.router.add_get("/overview", overview, allow_head=False)
    app.router.add_get("/overview/live", overview_live, allow_head=False)
    app.router.add_get("/api/history", history, allow_head=False)
    app.router.add_get("/dead-letters", dead_letters, allow_head=False)
    app.router.add_get("/dead-letters/{id}", dead_letter, allow_head=False)
    app.router.add_post("/dead-letters/confirm", confirm)
    app.router.add_post("/dead-letters/apply", apply)
    app.router.add_get("/playground", playground_page, allow_head=False)
    app.router.add_post("/playground", playground_map)
