"""The deliberate switch that shows one page's personal data unmasked, and the line that logs it.

Pages mask emails and phone numbers (console/mask.py). A page that offers the switch reads it
from ``?reveal=1`` on that page only (nothing links on to another revealed page), and each
reveal logs who looked at what: the page's item and the remote address, never the data.
"""

from __future__ import annotations

import logging

from aiohttp import web

log = logging.getLogger("mparticle_klaviyo.console")


def revealed(request: web.Request, **item: int) -> bool:
    """Whether the request asks to show personal data; logs it (``item`` names what is shown) if so."""
    if request.query.get("reveal") != "1":
        return False
    log.info("console personal data shown", extra={**item, "remote": request.remote})
    return True


def reveal_switch(here: str, reveal: bool) -> str:
    """The link that shows the personal data of page ``here`` (that page only), or masks it again."""
    if reveal:
        return (
            '<p class="reveal shown" role=status>Personal data shown (this page only; logged). '
            f'<a href="{here}" id=reveal-switch>Mask personal data</a></p>'
        )
    return (
        "<p class=reveal>Emails and phone numbers are masked. "
        f'<a href="{here}?reveal=1" id=reveal-switch>Show personal data</a></p>'
    )
