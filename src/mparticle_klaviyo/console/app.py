"""The console's aiohttp application, mounted by ``serve`` under ``/console``.

Access: every route but the login form and the static files needs a live session; an
unauthenticated POST is refused before its body is read. Every POST needs the session's CSRF
token (form field ``csrf``) and, from a browser, an Origin of this host. The cookie is HttpOnly,
SameSite=Strict and scoped to ``/console``; the password is never logged or rendered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from mparticle_klaviyo.config import Config
from mparticle_klaviyo.console import live_pages, pages
from mparticle_klaviyo.console.forms import LOGIN_BYTES, Form, read_form, same_origin, too_large
from mparticle_klaviyo.console.history import History
from mparticle_klaviyo.console.html import PREFIX, html_response, redirect
from mparticle_klaviyo.console.overview import Overview, this_node
from mparticle_klaviyo.console.sessions import COOKIE, LIFETIME_S, Session, Sessions, csrf_ok
from mparticle_klaviyo.observe.live import LiveTraffic
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.secret import Secret
from mparticle_klaviyo.server.app import INGEST
from mparticle_klaviyo.server.errors import PayloadTooLargeError
from mparticle_klaviyo.store.async_store import AsyncJobStore

log = logging.getLogger("mparticle_klaviyo.console")
STATIC = Path(__file__).parent / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PUBLIC = frozenset({f"{PREFIX}/login"})


class Console:
    """The console's state: configuration, store, sessions, sampled history, recent traffic."""

    def __init__(
        self,
        config: Config,
        store: AsyncJobStore,
        metrics: Metrics,
        wake: Callable[[str], None],
        store_shown: str,
        live: LiveTraffic | None = None,
        *,
        node: str,
    ) -> None:
        password = config.service.console_password
        assert password is not None
        self.config = config
        self.store = store
        self.wake = wake
        self.sessions = Sessions(Secret(password.get_secret_value()))
        self.history = History(metrics)
        self.overview = Overview(store, self.history, sorted(config.connections), store_shown)
        self.live = live or LiveTraffic()
        # This process as the overview marks it among the cluster's nodes.
        self.me = this_node(node)


CONSOLE = web.AppKey("console", Console)


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Session, Origin and CSRF checks, in that order; the body is read only after the first."""
    if request.path in _PUBLIC or request.path.startswith(f"{PREFIX}/static/"):
        return await handler(request)
    console = request.app[CONSOLE]
    session = console.sessions.find(request.cookies.get(COOKIE))
    if session is None:
        if request.method == "GET":
            return redirect(f"{PREFIX}/login")
        return _refused(401, "Log in first.")
    if request.method == "POST":
        if not same_origin(request):
            return _refused(403, "This form came from another site.")
        try:
            form = await read_form(request, pages.FORM_LIMIT)
        except PayloadTooLargeError:
            return _refused(413, too_large(pages.FORM_LIMIT))
        if form is None or not _csrf(session, form):
            return _refused(403, "The form's security token is missing or wrong: reload the page and try again.")
        pages.FORM.set(form)
    pages.SESSION.set(session)
    return await handler(request)


def _csrf(session: Session, form: Form) -> bool:
    return csrf_ok(session, form.get("csrf") or None)


def _refused(status: int, message: str) -> web.Response:
    return html_response(f"<!doctype html><title>Refused</title><p>{message}</p>", status=status)


async def login_page(request: web.Request) -> web.StreamResponse:
    """``GET /console/login``."""
    return pages.login(error="")


async def login(request: web.Request) -> web.StreamResponse:
    """``POST /console/login``: a small form read under a byte budget; a session on success."""
    sessions = request.app[CONSOLE].sessions
    if sessions.throttled():
        return _refused(429, "Too many failed logins: wait a minute.")
    if not same_origin(request):
        return _refused(403, "This form came from another site.")
    try:
        form = await read_form(request, LOGIN_BYTES)
    except PayloadTooLargeError:
        form = None  # before login, nothing says more than "wrong password"
    token = None if form is None else sessions.login(form.get("password"))
    if token is None:
        log.info("console login refused", extra={"remote": request.remote})
        return pages.login(error="Wrong password.", status=401)
    log.info("console login", extra={"remote": request.remote})
    response = redirect(f"{PREFIX}/overview")
    response.set_cookie(
        COOKIE, token, path=PREFIX, httponly=True, samesite="Strict", secure=request.secure, max_age=LIFETIME_S
    )
    return response


async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /console/logout``: the session ends here and in the browser."""
    request.app[CONSOLE].sessions.logout(request.cookies.get(COOKIE))
    response = redirect(f"{PREFIX}/login")
    response.del_cookie(COOKIE, path=PREFIX)
    return response


async def _sampling(app: web.Application) -> AsyncIterator[None]:
    """Sample the counters for the chart while the app runs."""
    stop = asyncio.Event()
    task = asyncio.create_task(app[CONSOLE].history.run(stop))
    yield
    stop.set()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_console(console: Console) -> web.Application:
    """The console application (mount it at ``PREFIX``)."""
    app = web.Application(middlewares=[guard])
    app[CONSOLE] = console
    app.router.add_get("", pages.home, allow_head=False)
    app.router.add_get("/", pages.home, allow_head=False)
    app.router.add_get("/login", login_page, allow_head=False)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    pages.add_routes(app)
    live_pages.add_routes(app)
    app.router.add_static("/static", STATIC, append_version=False)
    app.cleanup_ctx.append(_sampling)
    return app


def mount_console(
    app: web.Application,
    config: Config,
    store: AsyncJobStore,
    metrics: Metrics,
    wake: Callable[[str], None],
    store_shown: str,
    *,
    node: str,
) -> bool:
    """Add the console under ``PREFIX`` when ``[service] console_password`` is set; whether it was.

    ``node``: this process's name in the lease table, which the overview marks as this node.
    """
    if config.service.console_password is None:
        return False
    console = Console(config, store, metrics, wake, store_shown, _live(app), node=node)
    app.add_subapp(PREFIX, create_console(console))
    return True


def _live(app: web.Application) -> LiveTraffic:
    """The ingest's Live stream recorder (``serve`` made it, with delivery's); one from now on if it has none."""
    ingest = app.get(INGEST)
    if ingest is None:
        return LiveTraffic()
    if ingest.live is None:
        ingest.live = LiveTraffic()
    return ingest.live
