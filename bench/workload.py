"""A realistic synthetic workload: mParticle batches of 10 events covering all six event types."""

from __future__ import annotations

import json
from typing import Any

_BASE_MS = 1_760_000_000_000


def _event(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"event_type": kind, "data": data}


def _product(n: int, price: float, quantity: int) -> dict[str, Any]:
    return {
        "id": f"SKU-{n}",
        "name": f"Product {n}",
        "brand": "Acme",
        "category": "Shoes",
        "price": price,
        "quantity": quantity,
        "total_product_amount": price * quantity,
        "custom_attributes": {"size": "9"},
    }


def _events(user: int) -> list[dict[str, Any]]:
    """Ten events: session start/end, app state, screen view, custom events and commerce."""
    t = _BASE_MS + user * 60_000
    common = {"session_uuid": f"s-{user}"}

    def data(n: int, **extra: Any) -> dict[str, Any]:
        return {"timestamp_unixtime_ms": t + n * 1000, "source_message_id": f"m-{user}-{n}", **common, **extra}

    purchase = {
        "action": "purchase",
        "transaction_id": f"T-{user}",
        "total_amount": 99.5,
        "tax_amount": 5.0,
        "products": [_product(1, 39.75, 2), _product(2, 20.0, 1)],
    }
    return [
        _event("session_start", data(0)),
        _event("application_state_transition", data(1, application_transition_type="application_initialized")),
        _event("screen_view", data(2, screen_name="Home", custom_attributes={"section": "landing"})),
        _event(
            "custom_event",
            data(
                3,
                event_name="Viewed Article",
                custom_event_type="navigation",
                custom_attributes={"article_id": f"a-{user}", "author": "Jane", "words": 1200, "$value": "1.5"},
            ),
        ),
        _event(
            "commerce_event",
            data(4, currency_code="USD", product_action={"action": "add_to_cart", "products": [_product(1, 39.75, 2)]}),
        ),
        _event("commerce_event", data(5, currency_code="USD", product_action=purchase)),
        _event(
            "custom_event", data(6, event_name="Searched", custom_event_type="search", custom_attributes={"q": "shoes"})
        ),
        _event("screen_view", data(7, screen_name="Checkout")),
        _event("application_state_transition", data(8, application_transition_type="application_background")),
        _event("session_end", data(9, session_duration_ms=9000)),
    ]


def batch(user: int) -> dict[str, Any]:
    """One user's batch (inbound Events API shape)."""
    return {
        "environment": "production",
        "source_request_id": f"req-{user}",
        "mpid": str(7_000_000_000_000_000_000 + user),
        "device_info": {"platform": "iOS"},
        "user_identities": {
            "email": f"user{user}@example.com",
            "mobile_number": f"(617) 555-{user % 10000:04d}",
            "customer_id": f"c-{user}",
        },
        "user_attributes": {
            "$FirstName": "Jane",
            "$LastName": f"Doe{user}",
            "$City": "Boston",
            "$State": "MA",
            "$Country": "USA",
            "$Zip": "02110",
            "plan": "gold",
            "interests": ["running", "jazz"],
        },
        "consent_state": {"gdpr": {"email_marketing": {"consented": True, "timestamp_unixtime_ms": _BASE_MS}}},
        "events": _events(user),
    }


def encoded_batches(count: int) -> list[bytes]:
    """``count`` distinct users' batches as JSON bytes, as they arrive over HTTP or in files."""
    return [json.dumps(batch(user)).encode() for user in range(count)]
