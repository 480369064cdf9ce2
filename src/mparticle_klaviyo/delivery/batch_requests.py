"""The Klaviyo requests of one mapped batch on its own: what ``map`` prints."""

from __future__ import annotations

from typing import Any

import msgspec

from mparticle_klaviyo.delivery.payloads import BulkEventBuilder, client_event_request, subscription_request
from mparticle_klaviyo.jobs.inputs import Mapped
from mparticle_klaviyo.klaviyo.request import KlaviyoRequest


def subscription_requests(mapped: Mapped) -> list[KlaviyoRequest]:
    """Consent subscriptions of one mapped batch."""
    mapping = mapped.connection.mapping
    return [subscription_request(s, mapping.list_id, mapping.server_mode) for s in mapped.result.subscriptions]


def batch_requests(mapped: Mapped) -> list[KlaviyoRequest]:
    """All requests of one batch on its own (what ``map`` prints)."""
    requests = subscription_requests(mapped)
    if mapped.connection.server_mode:
        builder = BulkEventBuilder()
        for event in mapped.result.events:
            requests.extend(builder.add(event))
        requests.extend(builder.flush())
    else:
        requests.extend(client_event_request(e) for e in mapped.result.events)
    return requests


def shown_path(request: KlaviyoRequest) -> str:
    """The request path as printed: client requests show their key as ``***``."""
    return f"{request.path}?company_id=***" if request.auth == "public" else request.path


def map_lines(mapped: Mapped) -> list[dict[str, Any]]:
    """What ``map`` prints for one mapped batch: its requests, then its drops and warnings."""
    lines: list[dict[str, Any]] = [
        {"kind": "request", "method": r.method, "path": shown_path(r), "body": r.body} for r in batch_requests(mapped)
    ]
    lines += [{"batch": mapped.item.number, **msgspec.to_builtins(n)} for n in mapped.result.notices]
    return lines
