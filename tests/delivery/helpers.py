"""Shared test helpers: run a coroutine with a deadline, build requests, count sliding windows."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from mparticle_klaviyo.delivery.clock import Clock
from mparticle_klaviyo.klaviyo.classify import Outcome
from mparticle_klaviyo.klaviyo.client import KlaviyoClient
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.secret import Secret

T = TypeVar("T")

PUBLIC_KEY = "PubKey123"
PRIVATE_KEY = "pk_0123456789abcdef0123456789abcdef"
EVENTS = "POST /client/events"


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 20.0) -> T:
    """Run ``coro`` on a fresh loop; fail instead of hanging past ``timeout_s``."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())


def event_request(n: int = 0, *, auth: str = "public") -> KlaviyoRequest:
    """A small client-event request whose body names ``n``."""
    path = "/client/events" if auth == "public" else "/api/events"
    body = {"data": {"type": "event", "attributes": {"properties": {"n": n}, "unique_id": f"u{n}"}}}
    return KlaviyoRequest(path=path, auth="public" if auth == "public" else "private", kind="event", body=body)


def client_for(base_url: str, *, timeout_s: float = 5.0, private: bool = True) -> KlaviyoClient:
    """A real client pointed at ``base_url`` with the test keys."""
    return KlaviyoClient(
        public_key=Secret(PUBLIC_KEY),
        private_key=Secret(PRIVATE_KEY) if private else None,
        base_url=base_url,
        timeout_s=timeout_s,
    )


def max_in_window(times: Sequence[float], window_s: float) -> int:
    """Most events in any closed interval of length ``window_s`` (``times`` sorted)."""
    best = start = 0
    for end, at in enumerate(times):
        while at - times[start] > window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


class RecordingTransport:
    """Wraps a real client and records the clock time at which each request goes out."""

    def __init__(self, client: KlaviyoClient, clock: Clock) -> None:
        self.client = client
        self.clock = clock
        self.sent_at: list[float] = []

    async def send(self, request: KlaviyoRequest) -> Outcome:
        """Record the send time, then send for real."""
        self.sent_at.append(self.clock.now())
        return await self.client.send(request)
