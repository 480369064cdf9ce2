"""Running the emulator: in-process for tests (``start_emulator``) or blocking for the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import socket

from aiohttp import web

from .config import EmulatorConfig
from .core import Emulator


class RunningEmulator:
    """An emulator listening on a loopback port; ``url`` has no trailing slash."""

    def __init__(self, emulator: Emulator, runner: web.AppRunner, url: str) -> None:
        self.emulator = emulator
        self.url = url
        self._runner = runner

    async def close(self) -> None:
        """Stop listening and close open connections."""
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningEmulator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def start_emulator(
    config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningEmulator:
    """Start an emulator on ``host:port`` (port 0 picks a free one) in the running loop."""
    emulator = Emulator(config)
    runner = web.AppRunner(emulator.app(), access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.create_server((host, port), reuse_port=False)
    site = web.SockSite(runner, sock)
    await site.start()
    bound_host, bound_port = sock.getsockname()[:2]
    return RunningEmulator(emulator, runner, f"http://{_url_host(bound_host)}:{bound_port}")


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def serve_emulator(config: EmulatorConfig, host: str, port: int) -> None:
    """Serve until interrupted, printing the URL once listening (``mparticle-klaviyo emulator``)."""
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way to stop it
        asyncio.run(_serve_forever(config, host, port))


async def _serve_forever(config: EmulatorConfig, host: str, port: int) -> None:
    running = await start_emulator(config, host, port)
    print(f"Klaviyo emulator listening on {running.url}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await running.close()
