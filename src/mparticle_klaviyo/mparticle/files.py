"""Read batch files: JSON documents or JSON lines, optionally gzipped, streamed record by record."""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec

from mparticle_klaviyo.errors import InputError
from mparticle_klaviyo.json_errors import syntax_problem
from mparticle_klaviyo.mparticle.decode import decode_document
from mparticle_klaviyo.mparticle.model import UserBatch

_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"


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


def count_lines(path: Path, chunk: int = 1 << 20) -> int:
    """The lines of ``path`` (gunzipped), counted without decoding them: fast, for progress estimates."""
    lines, last = 0, b"\n"
    with open_input(path) as handle:
        while block := handle.read(chunk):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


def read_records(path: Path) -> Iterator[Record]:
    """Yield each document of ``path``: one JSON document, or one per line (JSON lines).

    A file whose first non-blank line is a complete JSON value is read as JSON lines, so huge
    exports stream in constant memory; otherwise (pretty-printed JSON) the whole file is one
    document. A JSON-lines file whose first line is broken is still read line by line. A file
    that cannot be read (e.g. a truncated gzip) ends with an error record.
    """
    try:
        yield from _read(path)
    except (OSError, EOFError, zlib.error) as exc:
        yield Record(str(path), 0, error=InputError("", f"cannot read the file: {exc}"))


def read_bytes(name: str, raw: bytes) -> Iterator[Record]:
    """Yield each document of ``raw`` as ``read_records`` reads a file's (the console's uploads and pastes)."""
    yield from _read_handle(name, io.BytesIO(raw))


def _read(path: Path) -> Iterator[Record]:
    with open_input(path) as handle:
        yield from _read_handle(str(path), handle)


def _read_handle(path: str, handle: BinaryIO) -> Iterator[Record]:
    first_line, line_no = _first_content_line(handle)
    if first_line is None:
        return
    if not _is_complete_json(first_line):
        rest = handle.read()
        whole = _record(path, 0, first_line + rest)
        if whole.error is None or not _second_line_is_json(rest):
            yield whole
            return
        lines: Iterable[bytes] = rest.splitlines(keepends=True)
    else:
        lines = handle
    yield _record(path, line_no, first_line)
    for line in lines:
        line_no += 1
        if line.strip():
            yield _record(path, line_no, line)


def _second_line_is_json(rest: bytes) -> bool:
    """After a broken first line: does the next non-blank line hold a whole JSON value (JSON lines)?"""
    following = next((line for line in rest.splitlines() if line.strip()), None)
    return following is not None and following.lstrip()[:1] in (b"{", b"[") and _is_complete_json(following)


def _first_content_line(handle: BinaryIO) -> tuple[bytes | None, int]:
    """The first non-blank line and its 1-based number, or None for an empty file."""
    for number, line in enumerate(handle, start=1):
        if number == 1:
            line = line.removeprefix(_UTF8_BOM)  # editors on Windows start files with one
        if line.strip():
            return line, number
    return None, 0


def _is_complete_json(line: bytes) -> bool:
    """Whether ``line`` holds a whole JSON value: a value or text that cannot be JSON at all.

    Bad text (not UTF-8, nested too deeply) counts as whole: decode_document rejects it with a
    reason; only a value that breaks off or goes on wrongly means the document spans lines.
    """
    problem = syntax_problem(line)
    return problem is None or problem.kind in ("not_utf8", "too_deep", "not_json_number")


def _record(path: str, line: int, raw: bytes) -> Record:
    """Decode one document, capturing a decode error instead of raising it."""
    try:
        return Record(path, line, batches=decode_document(raw))
    except InputError as exc:
        return Record(path, line, error=exc)
