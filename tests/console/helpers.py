"""The ingest app with the console mounted, on a loopback port, for HTTP tests of the console."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from mparticle_klaviyo.console.app import mount_console
from mparticle_klaviyo.jobs.plan import plan_jobs
from mparticle_klaviyo.mparticle.decode import decode_document
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.server.app import create_app
from mparticle_klaviyo.server.http_server import ingest_runner
from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.service.e2e_helpers import connection, custom_event, user_batch
from tests.service.live import make_config

NOWHERE = "http://127.0.0.1:9"

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name=csrf value="([^"]+)"')


class Served:
    """A running app: its URL, its store, and the connections its console woke."""

    def __init__(self, url: str, store: AsyncStore, woken: list[str]) -> None:
        self.url = url
        self.store = store
        self.woken = woken


@asynccontextmanager
async def served(directory: Path, **service: Any) -> AsyncIterator[Served]:
    """``create_app`` plus the console (when ``console_password`` is given) on ``127.0.0.1:<free>``."""
    config = make_config(directory / "jobs.sqlite3", **service)
    store = AsyncStore(SqliteJobStore(directory / "jobs.sqlite3", dedup_window_s=60))
    woken: list[str] = []
    metrics = Metrics()
    app = create_app(config, store, metrics, woken.append)
    mount_console(app, config, store, metrics, woken.append, "jobs.sqlite3", node="test-node")
    runner = ingest_runner(app, config.service)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Served(f"http://{host}:{port}", store, woken)
    finally:
        await runner.cleanup()
        await store.close()


async def logged_in(session: aiohttp.ClientSession, url: str) -> str:
    """Log ``session`` in; the CSRF token of its pages."""
    async with session.post(f"{url}/console/login", data={"password": PASSWORD}) as response:
        assert response.status == 200, await response.text()  # followed the 303 to the overview
        found = _CSRF.search(await response.text())
    assert found is not None
    return found.group(1)


def client() -> aiohttp.ClientSession:
    """A client with a cookie jar that keeps cookies of ``127.0.0.1`` (aiohttp's drops IP hosts)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


def seed_dead(directory: Path, users: tuple[str, ...] = ("jane.doe",), reason: str = "http_400") -> list[int]:
    """Dead jobs (one custom event per user, of ``acme``) in the store file; their ids."""
    directory.mkdir(parents=True, exist_ok=True)
    store = SqliteJobStore(directory / "jobs.sqlite3")
    try:
        batches = [user_batch(user, [custom_event(f"m-{user}")]) for user in users]
        planned = plan_jobs(decode_document(json.dumps(batches).encode()), connection(NOWHERE), time.time() * 1000)
        store.enqueue(planned.jobs, time.time())
        ids = [job.id for job in store.claim("acme", 100, 60.0, time.time())]
        store.bury(ids, reason, "invalid: 'jane.doe@example.com' is not allowed (+15555550123)", time.time())
        return ids
    finally:
        store.close()
