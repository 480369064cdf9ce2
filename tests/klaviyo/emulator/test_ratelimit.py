"""Rule 25: fixed 1 s and 60 s windows per account and endpoint, 429 body and headers."""

from __future__ import annotations

from .helpers import (
    NOW,
    Req,
    assert_error,
    client,
    config,
    encode,
    event_body,
    exchange,
    profile_body,
    server,
)

TINY = {"POST /client/events": (2, 3), "POST /client/profiles": (2, 3), "POST /api/events": (2, 3)}


def _events(count: int, at: float = NOW, company: str = "DEMO01") -> list[Req]:
    reqs = []
    for i in range(count):
        req = client("/client/events", event_body(unique_id=f"u{at}-{i}"), company=company)
        req.at = at
        reqs.append(req)
    return reqs


def test_a_request_over_the_per_second_limit_is_429_with_klaviyos_body() -> None:
    responses, state = exchange(*_events(3), cfg=config(rate_limits=dict(TINY)))
    assert [r.status for r in responses] == [202, 202, 429]
    error = assert_error(responses[2], 429, "throttled", pointer="/data")
    assert error["title"] == "Request was throttled."
    assert error["detail"] == "Request was throttled. Expected available in 1 second."
    assert len(state["events"]) == 2
    assert state["throttled"] == 1


def test_a_429_carries_an_integer_retry_after_and_no_ratelimit_headers() -> None:
    responses, _ = exchange(*_events(3, at=NOW + 0.25), cfg=config(rate_limits=dict(TINY)))
    throttled = responses[2]
    assert throttled.headers["Retry-After"] == "1"
    assert not any(name.lower().startswith("ratelimit-") for name in throttled.headers)


def test_the_next_second_opens_a_new_burst_window() -> None:
    responses, _ = exchange(*_events(2), *_events(1, at=NOW + 1), cfg=config(rate_limits=dict(TINY)))
    assert [r.status for r in responses] == [202, 202, 202]


def test_the_burst_window_is_fixed_not_sliding() -> None:
    reqs = _events(2, at=NOW + 0.9) + _events(2, at=NOW + 1.0)
    cfg = config(rate_limits={"POST /client/events": (2, 100)})
    responses, _ = exchange(*reqs, cfg=cfg)
    assert [r.status for r in responses] == [202, 202, 202, 202]


def test_the_steady_window_throttles_until_the_next_minute() -> None:
    reqs = _events(2) + _events(1, at=NOW + 1) + _events(1, at=NOW + 2) + _events(1, at=NOW + 60)
    responses, _ = exchange(*reqs, cfg=config(rate_limits=dict(TINY)))
    assert [r.status for r in responses] == [202, 202, 202, 429, 202]
    assert responses[3].headers["Retry-After"] == "58"
    assert "58 seconds" in responses[3].error()["detail"]


def test_successful_answers_carry_ratelimit_headers_for_the_steady_window() -> None:
    responses, _ = exchange(*_events(2, at=NOW + 15.5), cfg=config(rate_limits={"POST /client/events": (10, 50)}))
    assert responses[0].headers["RateLimit-Limit"] == "50"
    assert responses[0].headers["RateLimit-Remaining"] == "49"
    assert responses[1].headers["RateLimit-Remaining"] == "48"
    assert responses[1].headers["RateLimit-Reset"] == "45"


def test_a_rejected_body_still_uses_quota_and_carries_ratelimit_headers() -> None:
    bad = client("/client/events", {"data": {}})
    responses, _ = exchange(bad, bad, *_events(1), cfg=config(rate_limits=dict(TINY)))
    assert [r.status for r in responses] == [400, 400, 429]
    assert responses[0].headers["RateLimit-Remaining"] == "2"


def test_accounts_are_limited_separately() -> None:
    cfg = config(rate_limits=dict(TINY), company_ids=frozenset({"DEMO01", "OTHER2"}))
    responses, _ = exchange(*_events(2), *_events(2, company="OTHER2"), cfg=cfg)
    assert [r.status for r in responses] == [202] * 4


def test_endpoints_are_limited_separately() -> None:
    reqs = [*_events(2), client("/client/profiles", profile_body()), server("/api/events", event_body(unique_id="s"))]
    responses, _ = exchange(*reqs, cfg=config(rate_limits=dict(TINY)))
    assert [r.status for r in responses] == [202] * 4


def test_default_limits_are_klaviyos_xl_tier() -> None:
    responses, _ = exchange(Req("GET", "/_emulator/limits"))
    limits = responses[0].json()
    assert limits["POST /client/events"] == [350, 3500]
    assert limits["POST /client/subscriptions"] == [350, 750]
    assert limits["POST /api/event-bulk-create-jobs"] == [10, 150]
    assert limits["POST /api/profile-import"] == [75, 750]


def test_limits_can_be_overridden_at_runtime() -> None:
    override = Req("POST", "/_emulator/limits", encode({"POST /client/events": [1, 10]}))
    responses, _ = exchange(override, *_events(2))
    assert responses[0].json()["POST /client/events"] == [1, 10]
    assert [r.status for r in responses[1:]] == [202, 429]


def test_an_invalid_limit_override_is_400_and_changes_nothing() -> None:
    bad = Req("POST", "/_emulator/limits", encode({"POST /client/events": [0, 10]}))
    unknown = Req("POST", "/_emulator/limits", encode({"GET /client/events": [1, 1]}))
    responses, _ = exchange(bad, unknown, Req("GET", "/_emulator/limits"))
    assert [r.status for r in responses[:2]] == [400, 400]
    assert responses[2].json()["POST /client/events"] == [350, 3500]


def test_a_throttled_request_is_not_recorded_as_a_rejection() -> None:
    _, state = exchange(*_events(3), cfg=config(rate_limits=dict(TINY)))
    assert state["rejected"] == []
