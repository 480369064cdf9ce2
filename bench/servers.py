"""Servers the service benchmarks run as child processes, each on its own loopback port.

    .venv/bin/python bench/servers.py emulator PORT [--limit 'POST /client/events=20/600']... [--keep-events]
    .venv/bin/python bench/servers.py null PORT

``emulator``: the strict Klaviyo emulator (``start_emulator``'s app) plus ``GET /_bench/counters``:
the emulator's own counters and, per Klaviyo path, how many requests were answered with each
status (``?ids=1`` adds the ``unique_id`` of every kept event). Without ``--keep-events`` no
event document is kept, so memory stays flat however long it runs; the counters stay exact.

``null``: the baseline of the ingest benchmark, an aiohttp server whose ``POST /v2/bulkevents``
reads the body and answers 202, doing nothing else: the HTTP ceiling of this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable

from aiohttp import web

from mparticle_klaviyo.klaviyo.emulator import Emulator, EmulatorConfig

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def emulator_app(limits: dict[str, tuple[int, int]], keep_events: bool) -> web.Application:
    """The emulator with Klaviyo's default limits overridden by ``limits``, and the counters route."""
    config = EmulatorConfig(max_events_kept=None if keep_events else 0)
    config.rate_limits.update(limits)
    emulator = Emulator(config)
    statuses: defaultdict[str, Counter[int]] = defaultdict(Counter)

    @web.middleware
    async def counters(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/_bench/counters":
            state = emulator.state
            document: dict[str, object] = {
                "events_recorded": state.events_recorded,
                "duplicates_dropped": state.duplicates_dropped,
                "subscriptions": len(state.subscriptions),
                "throttled": state.throttled,
                "requests": state.requests,
                "violations": len(state.violations),
                "statuses": {path: {str(s): n for s, n in c.items()} for path, c in statuses.items()},
            }
            if request.query.get("ids"):
                document["unique_ids"] = [event["unique_id"] for event in state.events]
            return web.json_response(document)
        response = await handler(request)
        if not request.path.startswith("/_"):
            statuses[request.path][response.status] += 1
        return response

    app = emulator.app()
    app.middlewares.append(counters)
    return app


def null_app() -> web.Application:
    """Reads each bulk request's body and answers 202."""

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=202)

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/v2/bulkevents", accept)
    app.router.add_get("/readyz", ready)
    return app


async def serve(app: web.Application, port: int) -> None:
    """Serve on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def parse_limit(spec: str) -> tuple[str, tuple[int, int]]:
    """``'POST /client/events=20/600'`` -> ``('POST /client/events', (20, 600))``."""
    endpoint, _, numbers = spec.rpartition("=")
    per_second, _, per_minute = numbers.partition("/")
    return endpoint.strip(), (int(per_second), int(per_minute))


def main() -> None:
    """Run the chosen server."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["emulator", "null"])
    parser.add_argument("port", type=int)
    parser.add_argument("--limit", action="append", default=[], help="'METHOD /path=PER_SECOND/PER_MINUTE'")
    parser.add_argument("--keep-events", action="store_true")
    args = parser.parse_args()
    limits = dict(parse_limit(spec) for spec in args.limit)
    app = emulator_app(limits, args.keep_events) if args.kind == "emulator" else null_app()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(app, args.port))


if __name__ == "__main__":
    main()
