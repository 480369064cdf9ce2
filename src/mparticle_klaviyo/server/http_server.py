"""How the ingest app is served: aiohttp's server options that bound what a client may hold."""

from __future__ import annotations

from aiohttp import web

from mparticle_klaviyo.config import ServiceSettings

LINGER_S = 2.0


def ingest_runner(app: web.Application, service: ServiceSettings) -> web.AppRunner:
    """An ``AppRunner`` for ``app`` with our deadlines and without aiohttp's own inflation.

    ``keepalive_timeout`` is also aiohttp's only clock on a connection that has not yet sent a
    complete request head (it starts at connect and after each answer), so it is the header
    deadline too. Bodies are inflated by ``bodies.read_limited``, in bounded steps: aiohttp's
    auto-decompression would inflate a whole chunk at once, inside the event loop. After a
    refusal, what is left of the body is read and dropped for at most ``LINGER_S`` (so the
    client can read the answer before the connection closes), not aiohttp's 10 s.
    """
    return web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=5.0,
        keepalive_timeout=service.header_timeout_s,
        auto_decompress=False,
        lingering_time=LINGER_S,
    )
