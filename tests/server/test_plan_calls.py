"""A planning worker's loop: each call answered with its plan or its refusal, in order, until the input ends."""

from __future__ import annotations

import io
import json
import pickle
import time
from pathlib import Path

from mparticle_klaviyo.config import Connection, load_config
from mparticle_klaviyo.server.plan_calls import answer, read_frame, serve_calls
from mparticle_klaviyo.server.plan_wire import (
    HEADER_BYTES,
    PlanCall,
    Refusal,
    answer_decoder,
    frame,
    frame_size,
    framed,
)
from mparticle_klaviyo.server.planning import Limits, Route, plan_body
from tests.service.e2e_helpers import custom_event, user_batch, write_service_config

LIMITS = Limits(max_batches=100, max_batch_bytes=128 * 1024, max_job_bytes=256 * 1024 * 1024)
NOW_MS = time.time() * 1000


def acme(tmp_path: Path) -> Connection:
    return load_config(write_service_config(tmp_path, "http://127.0.0.1:1", 8080)).connections["acme"]


def call(raw: bytes, route: Route = Route.BULK, connection: str = "acme", limits: Limits = LIMITS) -> PlanCall:
    return PlanCall(7, route, connection, limits, NOW_MS, raw)


def test_a_good_body_is_answered_with_its_plan(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    raw = json.dumps([user_batch("u1", [custom_event("m1"), custom_event("m2")])]).encode()
    answered = answer(call(raw), {"acme": connection})
    assert answered.id == 7 and answered.refusal is None
    assert answered.plan == plan_body(Route.BULK, raw, connection, LIMITS, NOW_MS)


def test_refusals_carry_the_pointer_and_the_message(tmp_path: Path) -> None:
    connections = {"acme": acme(tmp_path)}
    bad = answer(call(b'[{"events": "nope"}]'), connections)
    assert (bad.refusal, bad.pointer) == (Refusal.INPUT, "/0/events") and bad.plan is None
    tight = Limits(max_batches=1, max_batch_bytes=128 * 1024, max_job_bytes=LIMITS.max_job_bytes)
    body = json.dumps([user_batch("u1", []), user_batch("u2", [])]).encode()
    large = answer(call(body, limits=tight), connections)
    assert large.refusal is Refusal.TOO_LARGE and large.message


def test_an_error_of_ours_is_answered_by_its_type_only(tmp_path: Path) -> None:
    answered = answer(call(b"[]", connection="nobody"), {"acme": acme(tmp_path)})
    assert (answered.refusal, answered.message) == (Refusal.INTERNAL, "KeyError")


def test_calls_are_answered_in_order_until_the_input_ends(tmp_path: Path) -> None:
    connection = acme(tmp_path)
    raws = [json.dumps([user_batch(f"u{n}", [custom_event(f"m{n}")])]).encode() for n in range(3)]
    source = io.BytesIO(
        framed(pickle.dumps({"acme": connection}))
        + b"".join(frame(PlanCall(n, Route.BULK, "acme", LIMITS, NOW_MS, raw)) for n, raw in enumerate(raws))
    )
    sink = io.BytesIO()
    serve_calls(source, sink)
    out = io.BytesIO(sink.getvalue())
    answers = []
    while (payload := read_frame(out)) is not None:
        answers.append(answer_decoder.decode(payload))
    assert [a.id for a in answers] == [0, 1, 2]
    assert [a.plan for a in answers] == [plan_body(Route.BULK, raw, connection, LIMITS, NOW_MS) for raw in raws]


def test_a_frame_cut_short_ends_the_loop_without_an_answer() -> None:
    whole = frame(call(b"[]"))
    assert frame_size(whole[:HEADER_BYTES]) == len(whole) - HEADER_BYTES
    assert read_frame(io.BytesIO(whole[:-1])) is None
    assert read_frame(io.BytesIO(whole[:2])) is None
    sink = io.BytesIO()
    serve_calls(io.BytesIO(b""), sink)
    assert sink.getvalue() == b""
