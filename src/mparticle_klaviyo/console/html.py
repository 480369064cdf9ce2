"""The pages' common HTML: layout, navigation, escaping, security headers.

Every value from the store, the config or a request goes through ``esc``; pages load only
``static/console.css`` and ``static/console.js``, and the Content-Security-Policy allows nothing
else (no inline script or style), so injected markup could not run.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

from aiohttp import web

PREFIX = "/console"
NAV = (
    ("overview", "Overview"),
    ("live", "Live stream"),
    ("dead-letters", "Dead letters"),
    ("playground", "Mapping playground"),
)
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
        " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make POSTs send "Origin: null"
    "Cache-Control": "no-store",
}


def esc(value: object) -> str:
    """Text for HTML, attribute values included."""
    return html.escape(str(value), quote=True)


def page(title: str, body: str, *, csrf: str | None, active: str = "") -> web.Response:
    """A whole page: head, navigation (when logged in), ``body``."""
    nav = "" if csrf is None else _nav(csrf, active)
    text = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)} · mparticle-klaviyo</title>"
        f'<link rel=icon href="{PREFIX}/static/favicon.svg" type="image/svg+xml">'
        f'<link rel=stylesheet href="{PREFIX}/static/console.css">'
        f'<script src="{PREFIX}/static/console.js" defer></script></head>'
        f"<body>{nav}<main id=main><h1>{esc(title)}</h1>{body}</main></body></html>"
    )
    return html_response(text)


def html_response(text: str, status: int = 200) -> web.Response:
    """An HTML answer with the console's security headers."""
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8", headers=HEADERS)


def _nav(csrf: str, active: str) -> str:
    links = "".join(
        f'<a href="{PREFIX}/{slug}"{" aria-current=page" if slug == active else ""}>{esc(label)}</a>'
        for slug, label in NAV
    )
    logout = f'<form method=post action="{PREFIX}/logout">{csrf_field(csrf)}<button>Log out</button></form>'
    return f"<nav><strong>mparticle-klaviyo</strong>{links}{logout}</nav>"


def csrf_field(csrf: str) -> str:
    """The hidden form field that carries the session's CSRF token."""
    return f'<input type=hidden name=csrf value="{esc(csrf)}">'


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], empty: str = "none") -> str:
    """A table of already-escaped cells; ``empty`` when there are no rows."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f"<p class=empty>{esc(empty)}</p>"
    head = "".join(f"<th scope=col>{esc(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def redirect(location: str) -> web.Response:
    """303 See Other to a console path (returned, not raised: the ingest middleware turns raised ones into JSON)."""
    return web.Response(status=303, headers={**HEADERS, "Location": location})
