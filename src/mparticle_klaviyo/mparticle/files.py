"""Read batch files: JSON documents or JSON lines, optionally gzipped, streamed record by record."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.mparticle.decode import decode_document
from mparticle_klaviyo.mparticle.model import UserBatch

_GZIP_MAGIC = b"\x1f\x8b"


class Record(msgspec.Struct, frozen=True):
    """One decoded document of a file (``line`` is 1-based; 0 for a whole-file document)."""

    path: str
    line: int
    batches: list[UserBatch] | None = None
    error: InputError | None = None

    @property
    def location(self) -> str:
        """``path`` or ``path:line``, for messages."""
        return f"{self.path}:{self.line}" if self.line else self.path


def open_input(path: Path) -> BinaryIO:
    """Open a file for reading bytes, transparently gunzipping it."""
    handle = path.open("rb")
    if handle.read(2) == _GZIP_MAGIC:
        handle.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    handle.seek(0)
    return handle


def read_records(path: Path) -> Iterator[Record]:
    """Yield each document of ``path``: one JSON document, or one per line (JSON lines).

    A file whose first non-blank line is a complete JSON value is read as JSON lines, so huge
    exports stream in constant memory; otherwise (pretty-printed JSON) the whole file is one
    document.
    """
    with open_input(path) as handle:
        first_line, line_no = _first_content_line(handle)
        if first_line is None:
            return
        if not _is_complete_json(first_line):
            yield _record(str(path), 0, first_line + handle.read())
            return
        yield _record(str(path), line_no, first_line)
        for line in handle:
            line_no += 1
            if line.strip():
                yield _record(str(path), line_no, line)


def _first_content_line(handle: BinaryIO) -> tuple[bytes | None, int]:
    """The first non-blank line and its 1-based number, or None for an empty file."""
    for number, line in enumerate(handle, start=1):
        if line.strip():
            return line, number
    return None, 0


def _is_complete_json(line: bytes) -> bool:
    try:
        msgspec.json.decode(line)
    except msgspec.DecodeError:
        return False
    return True


def _record(path: str, line: int, raw: bytes) -> Record:
    """Decode one document, capturing a decode error instead of raising it."""
    try:
        return Record(path, line, batches=decode_document(raw))
    except InputError as exc:
        return Record(path, line, error=exc)
