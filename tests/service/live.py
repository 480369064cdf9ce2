"""The ingest app on a real loopback port with a real SQLite file, for synchronous tests.

``LiveApp`` serves ``create_app`` from its own thread and event loop, so tests (and hypothesis or
schemathesis, which are synchronous) talk to it over HTTP with the standard library. ``jobs()``
opens the SQLite file anew, as another process would: what it sees was committed.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.client
import json
import socket
import sqlite3
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from mparticle_klaviyo.config import Config, Connection, ConnectionSettings, ServiceSettings
from mparticle_klaviyo.observe.metrics import Metrics
from mparticle_klaviyo.server.app import INGEST, Ingest, create_app
from mparticle_klaviyo.server.http_server import ingest_runner
from mparticle_klaviyo.store.aio import AsyncStore
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.store.helpers import hold_store_thread

# Two connections, each with its own credentials for every input.
ACME_TOKEN = "fh-token-acme-0123456789"
ACME_KEY = "events-key-acme"
ACME_SECRET = "events-secret-acme-0123456789"
ACME_WEBHOOK = "Bearer webhook-acme-0123456789"
BETA_TOKEN = "fh-token-beta-9876543210"
BETA_KEY = "events-key-beta"
BETA_SECRET = "events-secret-beta-9876543210"
BETA_WEBHOOK = "Basic d2ViaG9vay1iZXRhOnNlY3JldA=="

CONNECTIONS: dict[str, dict[str, Any]] = {
    "acme": {
        "public_api_key": "DEMO01",
        "list_id": "LIST01",
        "firehose_token": ACME_TOKEN,
        "events_api_key": ACME_KEY,
        "events_api_secret": ACME_SECRET,
        "webhook_authorization": ACME_WEBHOOK,
    },
    "beta": {
        "public_api_key": "BETA01",
        "firehose_token": BETA_TOKEN,
        "events_api_key": BETA_KEY,
        "events_api_secret": BETA_SECRET,
        "webhook_authorization": BETA_WEBHOOK,
    },
}


def basic(key: str = ACME_KEY, secret: str = ACME_SECRET) -> dict[str, str]:
    """HTTP Basic ``key:secret``, as the Events API and mParticle's server SDKs send it."""
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:{secret}".encode()).decode()}


def token(value: str = ACME_TOKEN) -> dict[str, str]:
    """Firehose's ``Authorization: Token <token>``."""
    return {"Authorization": f"Token {value}"}


def webhook(value: str = ACME_WEBHOOK) -> dict[str, str]:
    """The Authorization header value configured for the Webhook output."""
    return {"Authorization": value}


def make_config(store: Path, connections: Mapping[str, Mapping[str, Any]] | None = None, **service: Any) -> Config:
    """A configuration as ``load_config`` would build it, with the store at ``store``."""
    tables = {name: dict(table) for name, table in (connections or CONNECTIONS).items()}
    built = {name: Connection(name, ConnectionSettings.model_validate(t), t) for name, t in tables.items()}
    return Config(built, "test", ServiceSettings(store=str(store), **service))


class Answer:
    """One HTTP answer: status, headers (names lower-cased) and body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, str]:
        """The one error of a JSON error answer."""
        errors = self.json()["errors"]
        assert len(errors) == 1, errors
        error: dict[str, str] = errors[0]
        return error

    def __repr__(self) -> str:
        return f"Answer({self.status}, {self.body[:300]!r})"


class StoredJob:
    """One row of the ``jobs`` table, read straight from the SQLite file."""

    def __init__(self, connection: str, key: str, profile_key: str, kind: str, payload: bytes) -> None:
        self.connection = connection
        self.key = key
        self.profile_key = profile_key
        self.kind = kind
        self.payload = payload


def read_jobs(path: Path) -> list[StoredJob]:
    """Every job in the store file, in id order, through a connection of our own."""
    if not path.exists():
        return []
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT connection, key, profile_key, kind, payload FROM jobs ORDER BY id").fetchall()
    finally:
        db.close()
    return [StoredJob(*row) for row in rows]


def send(
    url: str, method: str, path: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> Answer:
    """One HTTP request on a fresh connection."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    client = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        client.request(method, path, body=body, headers=dict(headers or {}))
        response = client.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        client.close()


def as_body(document: Any) -> bytes:
    """A JSON document as request bytes (bytes pass through)."""
    return document if isinstance(document, bytes) else json.dumps(document).encode()


def gzipped(document: Any) -> bytes:
    """The document's JSON, gzip-compressed."""
    return gzip.compress(as_body(document))


class LiveApp:
    """``create_app`` with a SQLite store in ``directory``, served on ``127.0.0.1:<free port>``."""

    def __init__(self, directory: Path, connections: Mapping[str, Mapping[str, Any]] | None = None, **service: Any):
        directory.mkdir(parents=True, exist_ok=True)
        self.store_path = directory / "jobs.sqlite3"
        self.config = make_config(self.store_path, connections, **service)
        self.metrics = Metrics()
        self.woken: list[str] = []
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="live-app", daemon=True)
        self._runner: web.AppRunner | None = None
        self._store: AsyncStore | None = None
        self._ingest: Ingest | None = None

    def __enter__(self) -> LiveApp:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            self._call(self._stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    def _call(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(30)

    async def _start(self) -> None:
        self._store = AsyncStore(SqliteJobStore(self.store_path, dedup_window_s=self.config.service.dedup_window_s))
        app = create_app(self.config, self._store, self.metrics, self.woken.append)
        self._ingest = app[INGEST]
        self._runner = ingest_runner(app, self.config.service)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._store is not None:
            await self._store.close()
        # Handlers of connections a client left half-open: end them before the loop closes.
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    @property
    def ingest(self) -> Ingest:
        """The app's shared state (``ready`` is set by ``serve`` once it listens)."""
        assert self._ingest is not None
        return self._ingest

    def post(self, path: str, document: Any, headers: Mapping[str, str] | None = None) -> Answer:
        """POST a JSON document (or raw bytes) to ``path``."""
        return send(self.url, "POST", path, as_body(document), {"Content-Type": "application/json", **(headers or {})})

    def stall(self, path: str, headers: Mapping[str, str] | None = None) -> Answer:
        """POST that announces 1000 body bytes, sends 2 and waits for the answer (a read deadline's)."""
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        lines = [f"POST {path} HTTP/1.1", "Host: x", "Content-Length: 1000", "Content-Type: application/json"]
        head = "\r\n".join(lines + [f"{k}: {v}" for k, v in (headers or {}).items()]) + "\r\n\r\n"
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.sendall(head.encode() + b"[{")
            response = http.client.HTTPResponse(sock)
            response.begin()
            return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())

    def get(self, path: str) -> Answer:
        """GET ``path``."""
        return send(self.url, "GET", path)

    def hold_store(self) -> threading.Event:
        """Keep the store thread busy until the returned event is set: enqueues wait meanwhile."""
        assert self._store is not None
        return hold_store_thread(self._store)

    def break_store(self) -> None:
        """Close the store under the running app, as a failing disk would: ingest must answer 503."""
        assert self._store is not None
        self._store.store.close()

    def jobs(self) -> list[StoredJob]:
        """The jobs committed to the store file."""
        return read_jobs(self.store_path)
