"""What ``serve`` and its planning workers say to each other: length-prefixed msgpack frames.

A call carries one request body and what ``plan_body`` needs besides it; the answer carries
the ``BodyPlan`` or the refusal it raised (400 with its pointer, 413, or an error of ours).
"""

from __future__ import annotations

import enum

import msgspec

from mparticle_klaviyo.server.planning import BodyPlan, Limits, Route

HEADER_BYTES = 4  # each frame starts with its length, big-endian
_encoder = msgspec.msgpack.Encoder()


class PlanCall(msgspec.Struct, array_like=True):
    """Plan ``body`` as ``route`` takes it, for the connection named ``connection``."""

    id: int
    route: Route
    connection: str
    limits: Limits
    now_ms: float
    body: bytes


class Refusal(enum.Enum):
    """Why a body got no plan."""

    INPUT = "input"  # InputError: 400 naming the field
    TOO_LARGE = "too_large"  # PayloadTooLargeError: 413
    INTERNAL = "internal"  # anything else: an error of ours (503, nothing stored)


class PlanAnswer(msgspec.Struct, array_like=True):
    """A call's plan, or why there is none (``refusal`` with its pointer and message)."""

    id: int
    plan: BodyPlan | None = None
    refusal: Refusal | None = None
    pointer: str = ""
    message: str = ""


call_decoder = msgspec.msgpack.Decoder(PlanCall)
answer_decoder = msgspec.msgpack.Decoder(PlanAnswer)


def frame(message: PlanCall | PlanAnswer) -> bytes:
    """``message`` as one frame: its length, then its msgpack."""
    return framed(_encoder.encode(message))


def framed(payload: bytes) -> bytes:
    """``payload`` as one frame (its length first): the worker's first frame is its connections."""
    return len(payload).to_bytes(HEADER_BYTES, "big") + payload


def frame_size(header: bytes) -> int:
    """The payload length a frame header announces."""
    return int.from_bytes(header, "big")
