"""What every ingest endpoint shares: durable commit before 202, dedup, probes, metrics, JSON errors."""

from __future__ import annotations

import http.client
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mparticle_klaviyo.jobs.plan import unique_id_of
from mparticle_klaviyo.store.sqlite import SqliteJobStore
from tests.service.live import BETA_KEY, BETA_SECRET, LiveApp, basic, send, token, webhook
from tests.service.messages import batch, event, firehose_events, outbound_batch


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_202_means_the_job_is_in_the_file_for_any_other_reader(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        assert app.post("/v2/events", batch("ada@example.com"), basic()).status == 202
        # A connection of our own, opened after the answer: only committed rows are visible to it.
        db = sqlite3.connect(app.store_path)
        try:
            rows = db.execute("SELECT connection, key, state FROM jobs").fetchall()
        finally:
            db.close()
    assert [(connection, unique_id_of(key), state) for connection, key, state in rows] == [("acme", "msg-1", 0)]


def test_accepted_jobs_survive_the_app_and_can_be_claimed_after_a_restart(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        assert app.post("/v2/events", batch("ada@example.com"), basic()).status == 202
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    try:
        claimed = store.claim("acme", 10, 30.0, time.time())
    finally:
        store.close()
    assert [(unique_id_of(job.key), job.profile_key) for job in claimed] == [("msg-1", "email:ada@example.com")]


def test_the_same_event_sent_twice_is_queued_once(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        assert app.post("/v2/events", batch(), basic()).status == 202
        assert app.post("/v2/events", batch(), basic()).status == 202
        assert len(app.jobs()) == 1


def test_the_same_event_through_two_inputs_is_queued_once(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        assert app.post("/v2/events", batch(), basic()).status == 202
        assert app.post("/v2/bulkevents", [batch()], basic()).status == 202
        assert app.post("/webhook/acme", batch(), webhook()).status == 202
        assert len(app.jobs()) == 1


def test_two_metrics_of_one_user_sharing_an_event_id_are_both_queued(tmp_path: Path) -> None:
    placed = event("Order Placed", "m-placed", custom_attributes={"$event_id": "order-1"})
    shipped = event("Order Shipped", "m-shipped", custom_attributes={"$event_id": "order-1"})
    with LiveApp(tmp_path) as app:
        assert app.post("/v2/events", batch(events=[placed, shipped]), basic()).status == 202
        assert len(app.jobs()) == 2


def test_two_users_events_sharing_an_event_id_are_both_queued(tmp_path: Path) -> None:
    first = batch("a@example.com", [event(message_id="a", custom_attributes={"$event_id": "welcome"})])
    second = batch("b@example.com", [event(message_id="b", custom_attributes={"$event_id": "welcome"})])
    with LiveApp(tmp_path) as app:
        assert app.post("/v2/bulkevents", [first, second], basic()).status == 202
        assert len(app.jobs()) == 2


def test_a_resent_batch_without_message_ids_is_queued_once(tmp_path: Path) -> None:
    body = batch(events=[event(message_id=None), event("Second", message_id=None)])
    with LiveApp(tmp_path) as app:
        app.post("/v2/events", body, basic())
        app.post("/v2/events", body, basic())
        assert len(app.jobs()) == 2


def test_a_resent_firehose_request_is_queued_once(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        assert app.post("/firehose", firehose_events(), token()).status == 200
        assert app.post("/firehose", firehose_events(), token()).status == 200
        assert len(app.jobs()) == 1


def test_duplicates_are_counted_apart_from_queued_jobs(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        app.post("/v2/events", batch(), basic())
        app.post("/v2/events", batch(), basic())
        found = samples(app.get("/metrics").body.decode())
    assert found[("mpk_events_received_total", (("connection", "acme"), ("input", "events_api")))] == 2
    assert found[("mpk_jobs_queued_total", (("connection", "acme"),))] == 1
    assert found[("mpk_jobs_duplicate_total", (("connection", "acme"),))] == 1


def test_events_that_can_never_be_sent_are_answered_202_counted_and_not_stored(tmp_path: Path) -> None:
    no_identity = {"events": [event()], "environment": "production"}
    with LiveApp(tmp_path) as app:
        assert app.post("/v2/events", no_identity, basic()).status == 202
        assert app.jobs() == []
        found = samples(app.get("/metrics").body.decode())
    assert found[("mpk_events_dropped_total", (("connection", "acme"), ("reason", "no_email_or_phone")))] == 1


def test_a_request_refused_for_the_backlog_counts_nothing_as_received_or_dropped(tmp_path: Path) -> None:
    refused = batch("b@example.com", [event(message_id="m2"), {"event_type": "crash_report", "data": {}}])
    with LiveApp(tmp_path, high_water_mark=1) as app:
        assert app.post("/v2/events", batch("a@example.com", [event(message_id="m1")]), basic()).status == 202
        assert app.post("/v2/events", refused, basic()).status == 429
        found = samples(app.get("/metrics").body.decode())
    assert found[("mpk_events_received_total", (("connection", "acme"), ("input", "events_api")))] == 1
    assert ("mpk_events_dropped_total", (("connection", "acme"), ("reason", "unsupported_event_type"))) not in found


def test_accepting_jobs_wakes_the_connections_dispatcher(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        app.post("/webhook/acme", outbound_batch(), webhook())
        app.post("/v2/events", {"events": [event()]}, basic())  # nothing to queue: nobody to wake
    assert app.woken == ["acme"]


def test_rejected_requests_are_counted_by_input_and_status(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        app.post("/v2/events", batch())
        app.post("/firehose", firehose_events(), token("wrong"))
        app.post("/webhook/acme", b"{", webhook())
        found = samples(app.get("/metrics").body.decode())
    rejected = {labels: value for (name, labels), value in found.items() if name == "mpk_requests_rejected_total"}
    assert rejected == {
        (("input", "v2"), ("status", "401")): 1,
        (("input", "firehose"), ("status", "403")): 1,
        (("input", "webhook"), ("status", "400")): 1,
    }


def test_made_up_paths_do_not_create_metric_series(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        for n in range(5):
            assert app.get(f"/made-up-{n}").status == 404
        text = app.get("/metrics").body.decode()
    assert "made-up" not in text
    assert samples(text)[("mpk_requests_rejected_total", (("input", "unmatched"), ("status", "404")))] == 5


def test_metrics_are_prometheus_text(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.get("/metrics")
    names = {family.name for family in text_string_to_metric_families(answer.body.decode())}
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert {"mpk_events_received", "mpk_jobs_queued", "mpk_requests_rejected", "mpk_ingest_seconds"} <= names


def test_healthz_answers_200_while_the_process_runs(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.get("/healthz")
    assert (answer.status, answer.json()) == (200, {"status": "ok"})


def test_readyz_is_503_until_the_service_is_ready_then_200(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        before = app.get("/readyz")
        app.ingest.ready = True
        after = app.get("/readyz")
    assert (before.status, after.status) == (503, 200)
    assert after.json() == {"status": "ready"}


def test_an_unknown_path_is_a_json_404(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.get("/v1/events")
    assert (answer.status, answer.error["code"]) == (404, "NOT_FOUND")


def test_a_wrong_method_is_a_json_405(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answer = app.get("/v2/events")
    assert (answer.status, answer.error["code"]) == (405, "METHOD_NOT_ALLOWED")


def test_probes_answer_get_only(tmp_path: Path) -> None:
    with LiveApp(tmp_path) as app:
        answers = [send(app.url, "HEAD", path).status for path in ("/healthz", "/readyz", "/metrics", "/openapi.json")]
    assert answers == [405] * 4


def padded_batch(n: int, pad: int = 150_000) -> dict[str, object]:
    """A batch of about ``pad`` bytes: it holds 4x that of the budget, 6x once its job is planned."""
    document = batch(f"u{n}@example.com", [event(message_id=f"m{n}")])
    # Klaviyo refuses strings over 100 KB (the event would be dropped): pad with several.
    document["user_attributes"] = {f"padding{i}": "x" * (pad // 4) for i in range(4)}
    return document


def test_requests_beyond_the_memory_budget_wait_unread_and_are_all_accepted(tmp_path: Path) -> None:
    # 1 MiB of budget, ~900 KB per request: one at a time.
    with LiveApp(tmp_path, ingest_memory_budget_mb=1, max_batch_bytes=300_000) as app:
        release = app.hold_store()
        gauge = app.metrics.registry.get_sample_value
        with ThreadPoolExecutor(3) as pool:
            answers = [pool.submit(app.post, "/v2/events", padded_batch(n), basic()) for n in range(3)]
            deadline = time.monotonic() + 10
            while gauge("mpk_ingest_requests_waiting") != 2:
                assert time.monotonic() < deadline, "two requests should be waiting for the budget"
                time.sleep(0.01)
            assert gauge("mpk_ingest_requests_in_flight") == 1
            assert 0 < (gauge("mpk_ingest_budget_bytes_in_use") or 0) <= 1024 * 1024
            assert app.jobs() == []
            release.set()
            statuses = [answer.result(10).status for answer in answers]
        assert statuses == [202] * 3
        assert len(app.jobs()) == 3
        assert (gauge("mpk_ingest_requests_in_flight"), gauge("mpk_ingest_requests_waiting")) == (0, 0)
        assert gauge("mpk_ingest_budget_bytes_in_use") == 0


def test_a_request_that_waits_past_the_admission_timeout_is_told_to_retry(tmp_path: Path) -> None:
    with LiveApp(tmp_path, ingest_memory_budget_mb=1, max_batch_bytes=300_000, admission_timeout_s=0.3) as app:
        release = app.hold_store()
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(app.post, "/v2/events", padded_batch(0), basic())
            while app.metrics.registry.get_sample_value("mpk_ingest_requests_in_flight") != 1:
                time.sleep(0.01)
            refused = app.post("/v2/events", padded_batch(1), basic())
            release.set()
            assert held.result(10).status == 202
    assert (refused.status, refused.error["code"], refused.headers["retry-after"]) == (503, "BUSY", "5")
    assert len(app.jobs()) == 1


def test_probes_and_metrics_answer_while_every_ingest_slot_is_taken(tmp_path: Path) -> None:
    with LiveApp(tmp_path, ingest_memory_budget_mb=1, max_batch_bytes=300_000) as app:
        release = app.hold_store()
        with ThreadPoolExecutor(1) as pool:
            held = pool.submit(app.post, "/v2/events", padded_batch(0), basic())
            deadline = time.monotonic() + 10
            while app.metrics.registry.get_sample_value("mpk_ingest_requests_in_flight") != 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert app.get("/healthz").status == 200
            assert app.get("/metrics").status == 200
            release.set()
            assert held.result(10).status == 202


def fan_out_batch(events: int, attributes_kb: int) -> dict[str, object]:
    """One user's batch of many events with large user attributes: each event's job copies them."""
    document = batch("fan@example.com", [event(message_id=f"f{n}") for n in range(events)])
    document["user_attributes"] = {f"a{i}": "x" * 1000 for i in range(attributes_kb)}
    return document


def test_a_batch_whose_jobs_would_exceed_the_memory_budget_is_413_before_they_are_built(tmp_path: Path) -> None:
    # Seen in bench/ingest_memory.py --shape fanout: a 12 MB post held ~1.1 GB as jobs (96x).
    with LiveApp(tmp_path, ingest_memory_budget_mb=4) as app:
        answer = app.post("/v2/events", fan_out_batch(100, 60), basic())
        assert app.jobs() == []
    assert (answer.status, answer.error["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert "fewer events per batch" in answer.error["message"]


def test_a_batch_whose_jobs_fit_the_budget_is_accepted_with_its_hold_grown(tmp_path: Path) -> None:
    with LiveApp(tmp_path, ingest_memory_budget_mb=64) as app:
        release = app.hold_store()
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(app.post, "/v2/events", fan_out_batch(100, 60), basic())
            gauge = app.metrics.registry.get_sample_value
            deadline = time.monotonic() + 10
            while (gauge("mpk_ingest_budget_bytes_in_use") or 0) < 6_000_000:
                assert time.monotonic() < deadline, "the hold should grow to the jobs' size"
                time.sleep(0.01)
            release.set()
            assert pending.result(10).status == 202
        assert len(app.jobs()) == 100


def test_every_refused_request_is_one_log_line_with_its_code_and_pointer_and_never_the_body(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo.ingest")
    with LiveApp(tmp_path) as app:
        answer = app.post("/v2/events", {"events": [{"event_type": 3, "secret": "do-not-log"}]}, basic())
    assert answer.status == 400
    [line] = [r for r in caplog.records if r.getMessage() == "ingest request refused"]
    fields = tuple(getattr(line, name) for name in ("status", "code", "pointer", "input"))
    assert fields == (400, "BAD_REQUEST", "/events/0/event_type", "v2")
    assert "do-not-log" not in caplog.text


def test_probes_and_scrapes_stay_out_of_ingest_latency_and_refusals(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo.ingest")
    with LiveApp(tmp_path) as app:
        assert app.get("/readyz").status == 503, "not ready yet: a load balancer asks again"
        for path in ("/healthz", "/metrics", "/openapi.json"):
            assert app.get(path).status == 200
        app.post("/v2/events", batch(), basic())
        found = samples(app.get("/metrics").body.decode())
    timed = {dict(labels)["input"] for (name, labels) in found if name == "mpk_ingest_seconds_count"}
    refused = [labels for (name, labels) in found if name == "mpk_requests_rejected_total"]
    assert timed == {"v2"}
    assert refused == [], "a /readyz 503 is not a refused ingest request (an ingest 5xx alert would fire)"
    assert [r for r in caplog.records if r.getMessage() == "ingest request refused"] == []


def refusal(caplog: pytest.LogCaptureFixture) -> dict[str, object]:
    """The one ``ingest request refused`` line logged, as its fields."""
    [line] = [r for r in caplog.records if r.getMessage() == "ingest request refused"]
    fields = ("status", "code", "pointer", "input", "connection", "remote")
    return {name: getattr(line, name, "absent") for name in fields}


@pytest.mark.parametrize(
    ("path", "headers", "status", "code", "connection"),
    [
        ("/v2/events", {}, 401, "UNAUTHORIZED", None),
        ("/firehose", token("wrong-token"), 403, "FORBIDDEN", None),
        ("/webhook/acme", webhook("Bearer wrong"), 403, "FORBIDDEN", "acme"),
        (
            "/webhook/beta",
            {"Content-Encoding": "br", **webhook("Basic d2ViaG9vay1iZXRhOnNlY3JldA==")},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "beta",
        ),
        ("/v2/events", {"Content-Length": str(10 * 1024 * 1024), **basic()}, 413, "PAYLOAD_TOO_LARGE", "acme"),
    ],
    ids=["401", "403-firehose", "403-webhook", "415", "413"],
)
def test_a_refused_request_is_one_line_naming_its_status_code_and_connection(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    path: str,
    headers: dict[str, str],
    status: int,
    code: str,
    connection: str | None,
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo.ingest")
    body = b'{"events": [], "secret": "do-not-log"}'
    with LiveApp(tmp_path) as app:
        answer = send(app.url, "POST", path, body, {"Content-Type": "application/json", **headers})
    assert answer.status == status
    line = refusal(caplog)
    assert (line["status"], line["code"], line["input"], line["connection"]) == (
        status,
        code,
        path.split("/")[1],
        connection,
    )
    assert line["remote"] == "127.0.0.1"
    assert "do-not-log" not in caplog.text


def test_a_body_that_stalls_is_one_408_line_naming_its_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo.ingest")
    with LiveApp(tmp_path, body_idle_timeout_s=0.2) as app:
        answer = app.stall("/v2/events", basic())
    assert answer.status == 408
    assert refusal(caplog) == {
        "status": 408,
        "code": "REQUEST_TIMEOUT",
        "pointer": None,
        "input": "v2",
        "connection": "acme",
        "remote": "127.0.0.1",
    }


def test_a_bad_batch_is_logged_with_the_connection_it_authenticated_as(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo.ingest")
    with LiveApp(tmp_path) as app:
        assert app.post("/v2/events", {"events": [{"event_type": 3}]}, basic(BETA_KEY, BETA_SECRET)).status == 400
    assert refusal(caplog)["connection"] == "beta"


def test_a_refusal_on_a_kept_alive_connection_never_names_the_previous_requests_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mparticle_klaviyo.ingest")
    with LiveApp(tmp_path) as app:
        host, port = app.url.removeprefix("http://").rsplit(":", 1)
        client = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            for headers in (basic(), {}):  # acme's bad batch (400, kept alive), then no credentials (401)
                client.request("POST", "/v2/events", body=b"{", headers={"Content-Type": "application/json", **headers})
                client.getresponse().read()
        finally:
            client.close()
    lines = [r for r in caplog.records if r.getMessage() == "ingest request refused"]
    assert [(getattr(r, "status", None), getattr(r, "connection", "absent")) for r in lines] == [
        (400, "acme"),
        (401, None),
    ]
