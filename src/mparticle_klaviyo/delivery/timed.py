"""The dispatcher's client: every request counted per connection and endpoint, and timed."""

from __future__ import annotations

import time
from collections.abc import Callable

from mparticle_klaviyo.delivery.lane import Transport
from mparticle_klaviyo.klaviyo.classify import Outcome
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest
from mparticle_klaviyo.observe.metrics import Metrics


class TimedTransport:
    """``client``, with each request counted (``mpk_klaviyo_requests``) and timed per endpoint.

    ``on_send`` is called as a request goes out, in the task that sends it.
    """

    def __init__(
        self, client: Transport, metrics: Metrics, connection: str, on_send: Callable[[], None] | None = None
    ) -> None:
        self._client = client
        self._latency = metrics.klaviyo_latency
        self._requests = metrics.requests
        self._connection = connection
        self._on_send = on_send

    async def send(self, request: KlaviyoRequest) -> Outcome:
        """Send ``request``, count and time it."""
        # Counted per connection: the denominator of the connection's 429 share.
        self._requests.labels(self._connection, request.endpoint).inc()
        if self._on_send is not None:
            self._on_send()
        started = time.monotonic()
        try:
            return await self._client.send(request)
        finally:
            self._latency.labels(request.endpoint).observe(time.monotonic() - started)
