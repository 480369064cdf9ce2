"""A planning worker's work (``plan_worker`` starts it): answer plan calls from stdin on stdout.

It reads the connections (one pickled frame from its parent, never from argv or the
environment, so no key shows in ``ps``), then answers plan calls from stdin on stdout, one at a
time, until stdin closes. Planning is pure CPU (decode, check, plan the jobs), so a worker
process lets it run beside the event loop instead of under the same GIL.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
from typing import BinaryIO

from mparticle_klaviyo.config import Connection
from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.gc_tuning import tune_gc
from mparticle_klaviyo.server.errors import PayloadTooLargeError
from mparticle_klaviyo.server.plan_wire import (
    HEADER_BYTES,
    PlanAnswer,
    PlanCall,
    Refusal,
    call_decoder,
    frame,
    frame_size,
)
from mparticle_klaviyo.server.planning import plan_body

# Below serve's own threads: when the cores are busy, the event loop and the store thread (which
# every acknowledgement waits for) go first, and planning waits a little instead.
_NICENESS = 5


def answer(call: PlanCall, connections: dict[str, Connection]) -> PlanAnswer:
    """The plan of one call, or its refusal; never raises for what a body holds."""
    try:
        plan = plan_body(call.route, call.body, connections[call.connection], call.limits, call.now_ms)
    except InputError as error:
        return PlanAnswer(call.id, refusal=Refusal.INPUT, pointer=error.pointer, message=error.message)
    except PayloadTooLargeError as error:
        return PlanAnswer(call.id, refusal=Refusal.TOO_LARGE, pointer=error.pointer, message=error.message)
    except Exception as error:  # an error of ours: serve answers 503 and logs the type only
        return PlanAnswer(call.id, refusal=Refusal.INTERNAL, message=type(error).__name__)
    return PlanAnswer(call.id, plan=plan)


def read_frame(source: BinaryIO) -> bytes | None:
    """The next frame's payload; None at the end of the stream."""
    header = source.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES:
        return None
    size = frame_size(header)
    payload = source.read(size)
    return payload if len(payload) == size else None


def serve_calls(source: BinaryIO, sink: BinaryIO) -> None:
    """Read the connections, then answer every call until ``source`` ends."""
    first = read_frame(source)
    if first is None:
        return
    connections: dict[str, Connection] = pickle.loads(first)  # from our parent, over a private pipe
    while (payload := read_frame(source)) is not None:
        sink.write(frame(answer(call_decoder.decode(payload), connections)))
        sink.flush()


def run() -> None:
    """Answer calls on the original stdin and stdout; anything printed goes to stderr."""
    source = os.fdopen(os.dup(0), "rb")
    sink = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    tune_gc()  # as in serve: planning allocates the same short-lived dicts
    os.nice(_NICENESS)
    with contextlib.suppress(BrokenPipeError):  # serve went away
        serve_calls(source, sink)
