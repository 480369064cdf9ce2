"""Request bodies within limits: sizes refused before reading, read deadlines, bounded inflation.

A body is read chunk by chunk under three clocks: each chunk must arrive within
``idle_s``, the whole body within ``total_s``, and after ``grace_s`` the average rate must stay
above ``min_rate`` (a sender trickling a byte every few seconds holds nothing for long). Gzip
and deflate bodies are inflated here, not by aiohttp: in steps of at most ``_STEP`` output bytes
with a turn of the event loop between them, and never past the limit, so a small body that
inflates to gigabytes costs a few milliseconds and a 413.
"""

from __future__ import annotations

import asyncio
import time
import zlib

import msgspec
from aiohttp import web

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.json_errors import decode_checked
from mparticle_klaviyo.server.errors import (
    BodyTimeoutError,
    ClientGoneError,
    PayloadTooLargeError,
    UnsupportedEncodingError,
)

_CHUNK = 64 * 1024
_STEP = 256 * 1024  # inflated bytes per step between event-loop turns (~0.2 ms of work)
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])
# Content-Encoding -> zlib window bits (16+: gzip wrapper; plain: the zlib wrapper HTTP calls deflate).
_ENCODINGS: dict[str, int | None] = {
    "": None,
    "identity": None,
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}


class ReadDeadlines(msgspec.Struct, frozen=True, kw_only=True):
    """How long a body may take: per chunk, in all, and the slowest average after a grace period."""

    idle_s: float = 10.0
    total_s: float = 60.0
    grace_s: float = 5.0
    min_rate: float = 1024.0  # bytes per second


def content_encoding(request: web.Request) -> int | None:
    """The zlib window bits for the body's encoding (None: as is); 415 for anything else."""
    name = request.headers.get("Content-Encoding", "").strip().lower()
    if name not in _ENCODINGS:
        raise UnsupportedEncodingError(f"Content-Encoding {name!r} is not supported (use gzip, deflate or none)")
    return _ENCODINGS[name]


def declared_size(request: web.Request, limit: int) -> int:
    """The body's announced size (the limit when not announced); 413 when it is over ``limit``."""
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLargeError(f"body of {length} bytes exceeds the limit of {limit} bytes")
    return limit if length is None else length


async def read_limited(request: web.Request, limit: int, deadlines: ReadDeadlines | None = None) -> bytes:
    """The body, inflated, refusing more than ``limit`` bytes before reading them all."""
    wbits = content_encoding(request)
    declared_size(request, limit)
    inflater = None if wbits is None else _Inflater(wbits, limit)
    reader = _Reader(request, deadlines or ReadDeadlines())
    chunks: list[bytes] = []
    size = 0
    while chunk := await reader.next():
        size += len(chunk)
        if inflater is not None:
            chunks.extend(await inflater.feed(chunk))
        elif size > limit:
            raise PayloadTooLargeError(f"body exceeds the limit of {limit} bytes")
        else:
            chunks.append(chunk)
    if inflater is not None:
        inflater.finish()
    return b"".join(chunks)


class _Reader:
    """Chunks of a request body under the read deadlines."""

    def __init__(self, request: web.Request, deadlines: ReadDeadlines) -> None:
        self._request = request
        self._deadlines = deadlines
        self._started = time.monotonic()
        self._size = 0

    async def next(self) -> bytes:
        elapsed = time.monotonic() - self._started
        limits = self._deadlines
        if elapsed > limits.grace_s and self._size < limits.min_rate * elapsed:
            raise BodyTimeoutError(f"body arrives slower than {limits.min_rate:.0f} bytes/s")
        budget = min(limits.idle_s, limits.total_s - elapsed)
        if budget <= 0:
            raise BodyTimeoutError(f"body not received within {limits.total_s:g} s")
        try:
            async with asyncio.timeout(budget):
                chunk = await self._request.content.read(_CHUNK)
        except TimeoutError:
            raise BodyTimeoutError(f"no body data for {budget:g} s") from None
        except web.RequestPayloadError:
            if _gone(self._request):
                raise ClientGoneError() from None
            raise InputError("", "the body ended before its announced length or is badly chunked") from None
        except (ConnectionError, OSError):
            raise ClientGoneError() from None
        self._size += len(chunk)
        return chunk


def _gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


class _Inflater:
    """Incremental gzip/deflate with a hard output cap, yielding to the event loop between steps."""

    def __init__(self, wbits: int, limit: int) -> None:
        self._inflater = zlib.decompressobj(wbits=wbits)
        self._limit = limit
        self._size = 0

    async def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        while True:
            piece = self._step(data)
            data = self._inflater.unconsumed_tail
            if not piece and not data:
                return out  # this input is used up and no output is pending
            out.append(piece)
            await asyncio.sleep(0)  # a long inflation never holds the loop

    def _step(self, data: bytes) -> bytes:
        try:
            piece = self._inflater.decompress(data, _STEP)
        except zlib.error:
            raise InputError("", "the body is not valid data for its Content-Encoding") from None
        self._size += len(piece)
        if self._size > self._limit:
            raise PayloadTooLargeError(f"decompressed body exceeds the limit of {self._limit} bytes")
        return piece

    def finish(self) -> None:
        if not self._inflater.eof:
            raise InputError("", "the compressed body ends early")


def split_bulk(raw: bytes, max_batches: int, max_batch_bytes: int) -> list[bytes]:
    """The batches of a ``/v2/bulkevents`` array as raw JSON, each within the batch limit."""
    if raw.lstrip()[:1] != b"[":
        raise InputError("", "expected a JSON array of batches")
    parts = decode_checked(_raw_list, raw)
    if len(parts) > max_batches:
        raise PayloadTooLargeError(f"{len(parts)} batches in one request (at most {max_batches})")
    for index, part in enumerate(parts):
        if len(part) > max_batch_bytes:
            raise PayloadTooLargeError(f"batch of {len(part)} bytes (at most {max_batch_bytes})", f"/{index}")
    return [bytes(part) for part in parts]
