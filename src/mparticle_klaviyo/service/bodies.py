"""Request bodies within limits: size checks before reading, gzip, and bulk arrays split."""

from __future__ import annotations

import zlib

import msgspec
from aiohttp import web

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.json_errors import decode_checked
from mparticle_klaviyo.service.errors import PayloadTooLargeError

_CHUNK = 64 * 1024
_GZIP_MAGIC = b"\x1f\x8b"
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The (gunzipped) body, refusing more than ``limit`` bytes before reading them all."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLargeError(f"body of {request.content_length} bytes exceeds the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await _read_chunk(request):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLargeError(f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    # aiohttp's server decompresses gzip bodies itself (``auto_decompress``); gunzip here only
    # when it was told not to, i.e. when the body still starts with gzip's magic bytes.
    if request.headers.get("Content-Encoding", "").lower() == "gzip" and body[:2] == _GZIP_MAGIC:
        return _gunzip(body, limit)
    return body


async def _read_chunk(request: web.Request) -> bytes:
    try:
        return await request.content.read(_CHUNK)
    except web.RequestPayloadError:
        # aiohttp decodes Content-Encoding while reading: a body that is not what it claims.
        encoding = request.headers.get("Content-Encoding", "")
        raise InputError("", f"the body could not be decoded (Content-Encoding: {encoding or 'none'})") from None


def _gunzip(body: bytes, limit: int) -> bytes:
    """Decompress at most ``limit`` bytes: a small gzip bomb must not fill memory."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error:
        raise InputError("", "Content-Encoding is gzip but the body is not valid gzip") from None
    if len(data) > limit:
        raise PayloadTooLargeError(f"decompressed body exceeds the limit of {limit} bytes")
    return data


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
