"""Rules 1-2: paths with or without a trailing slash, 404, 405, and 410 for the retired APIs."""

from __future__ import annotations

import pytest

from .helpers import Req, assert_error, client, event_body, exchange, one, server


def test_a_path_with_a_trailing_slash_is_accepted() -> None:
    resp, state = one(client("/client/events/", event_body()))
    assert resp.status == 202
    assert len(state["events"]) == 1


def test_a_server_path_with_a_trailing_slash_is_accepted() -> None:
    resp, _ = one(server("/api/events/", event_body()))
    assert resp.status == 202


def test_an_unknown_path_is_404_with_an_error_body() -> None:
    resp, state = one(client("/client/nothing-here", event_body()))
    assert_error(resp, 404, "not_found")
    assert state["rejected"][0]["status"] == 404


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
def test_a_known_path_with_another_method_is_405(method: str) -> None:
    resp, _ = one(Req(method, "/client/events?company_id=DEMO01"))
    assert_error(resp, 405, "method_not_allowed")
    assert resp.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    ("path", "replacement"),
    [
        ("/api/track", "POST /client/events"),
        ("/api/track/", "POST /api/events"),
        ("/api/identify", "POST /client/profiles"),
        ("/api/track-once", "POST /client/events"),
        ("/api/v1/lists", "POST /client/subscriptions"),
        ("/api/v2/list/ABC/subscribe", "POST /api/profile-subscription-bulk-create-jobs"),
        ("/api/v1/metrics", "POST /api/events"),
        ("/api/v2/data-privacy/deletion-request", "POST /api/data-privacy-deletion-jobs"),
        ("/api/v1/people/exclusions", "POST /api/profile-subscription-bulk-delete-jobs"),
        ("/api/v2/list/ABC/subscribe", "POST /api/profile-subscription-bulk-delete-jobs"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_retired_v1_v2_path_is_410_naming_its_replacement(method: str, path: str, replacement: str) -> None:
    resp, _ = one(
        Req(method, path + "?data=e30=", b"data=%7B%7D", {"Content-Type": "application/x-www-form-urlencoded"})
    )
    error = assert_error(resp, 410, "gone")
    assert replacement in error["detail"]
    assert replacement in error["meta"]["replacements"]
    assert resp.body != b"1"


def test_a_path_that_only_starts_like_a_retired_one_is_404() -> None:
    resp, _ = one(Req("GET", "/api/tracking"))
    assert_error(resp, 404, "not_found")


@pytest.mark.parametrize("path", ["/api/profile-subscription-bulk-delete-jobs/", "/api/data-privacy-deletion-jobs/"])
def test_the_new_server_paths_accept_a_trailing_slash_and_only_post(path: str) -> None:
    responses, _ = exchange(server(path, {"data": {}}), Req("GET", path))
    assert_error(responses[0], 400, pointer="/data/type")  # routed: the body is judged
    assert_error(responses[1], 405, "method_not_allowed")
