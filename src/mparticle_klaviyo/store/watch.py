"""Watch the job store's files and disk, so that ``serve`` never acknowledges what it could lose.

For a PostgreSQL store (``path=None``) the files and the disk are the database server's, out of
sight: only failed calls count there, and a lost connection (``StoreUnreachableError``) holds
ingest like a failed write.

A 202 promises that the events are durable in the store. That promise breaks silently when the
store's files are deleted or replaced under the running process (SQLite goes on writing into
the unlinked inode, and a restart opens an empty file), when writes fail, or when the disk fills
up. ``StoreWatch.check`` notices each of these in microseconds (a few ``stat`` calls; free space
at most once a second), so the service can consult it before and after every commit and answer
503 instead of 202.

* Deleted or replaced files (the database, its ``-wal`` and its ``-shm``): needs a restart. The
  running process keeps its open files, so it still delivers the jobs already queued.
* A failed write (disk I/O error, full disk, read-only file): held for ``hold_s``, then the next
  commit tries again; each failure holds it anew.
* A read-only filesystem, or free space below ``min_free_bytes``: clears by itself once fixed.

Independent of the web framework; call it from one thread (the service's event loop).
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import sqlite3
import time
from collections.abc import Callable

import msgspec

from mparticle_klaviyo.store.errors import StoreError, StoreUnreachableError

log = logging.getLogger("mparticle_klaviyo.store")

# Room kept free for delivery: once ingest stops, dispatchers still write (claims, acks, dead
# letters: WAL frames, then checkpoints into the database file) to drain the backlog. 64 MiB is
# the WAL's truncation limit (sqlite_schema.WAL_SIZE_LIMIT), a fixed size rather than a share of
# the disk, because what the store needs does not grow with the disk (1% of 2 TB is 20 GB).
DEFAULT_MIN_FREE_BYTES = 64 * 1024 * 1024
FREE_SPACE_EVERY_S = 1.0
WRITE_ERROR_HOLD_S = 5.0
WATCHED_SUFFIXES = ("", "-wal", "-shm")
# sqlite3 primary result codes that mean the file or the disk is failing, not a busy lock.
_SQLITE_FAILURES = {
    8: "SQLITE_READONLY",
    10: "SQLITE_IOERR",
    11: "SQLITE_CORRUPT",
    13: "SQLITE_FULL",
    14: "SQLITE_CANTOPEN",
    26: "SQLITE_NOTADB",
}
_OS_FAILURES = frozenset({errno.EIO, errno.ENOSPC, errno.EROFS, errno.EDQUOT})
# O_PATH (Linux) opens the file without reading it; closing such a descriptor never drops the
# POSIX locks SQLite holds on the same file (closing any other one would).
_O_PATH: int | None = getattr(os, "O_PATH", None)

Statvfs = Callable[[str], os.statvfs_result]


class ProblemKind(enum.StrEnum):
    """Why the store cannot take new jobs now."""

    DELETED = "deleted"
    REPLACED = "replaced"
    WRITE_FAILED = "write_failed"
    READ_ONLY = "read_only"
    LOW_DISK = "low_disk"
    INACCESSIBLE = "inaccessible"
    UNREACHABLE = "unreachable"


class StoreProblem(msgspec.Struct, frozen=True, kw_only=True):
    """What is wrong with the store, in words for an operator (never a key), and whether a restart is needed."""

    kind: ProblemKind
    message: str
    restart_needed: bool = False


class StoreUnavailableError(StoreError):
    """The store has a problem: nothing of this call may be acknowledged; retry later."""

    def __init__(self, problem: StoreProblem) -> None:
        super().__init__(f"{problem.message}; nothing was acknowledged, retry later")
        self.problem = problem


class _Identity(msgspec.Struct, frozen=True):
    """Which file a path named: device and inode."""

    dev: int
    ino: int


class _Watched:
    """One of the store's files: its identity when first seen, and a descriptor to follow it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.identity: _Identity | None = None
        self.fd: int | None = None

    def adopt(self, stat: os.stat_result) -> None:
        """Remember the file ``path`` names now (open files may appear after the store opened)."""
        self.identity = _Identity(stat.st_dev, stat.st_ino)
        if _O_PATH is not None:
            try:
                fd = os.open(self.path, _O_PATH)
            except OSError:
                return
            if _identity(os.fstat(fd)) == self.identity:
                self.fd = fd
            else:
                os.close(fd)  # replaced in between: the next check sees it

    def unlinked(self) -> bool:
        """Whether the file we opened has no name left (st_nlink 0): deleted, not just moved."""
        return self.fd is not None and os.fstat(self.fd).st_nlink == 0

    def close(self) -> None:
        """Close the descriptor."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class StoreWatch:
    """The store's health: ``check()`` before acknowledging, ``note_write_error()`` when a write fails."""

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        clock: Callable[[], float] = time.monotonic,
        *,
        statvfs: Statvfs = os.statvfs,
        hold_s: float = WRITE_ERROR_HOLD_S,
        label: str | None = None,
    ) -> None:
        """Watch the SQLite file ``path``, or (``path=None``) a database server named ``label`` in logs."""
        if min_free_bytes < 0:
            raise ValueError("min_free_bytes must be >= 0")
        self.path = None if path is None else os.path.abspath(path)
        self.label = label or self.path or "database"
        self.min_free_bytes = min_free_bytes
        self.hold_s = hold_s
        self._clock = clock
        self._statvfs = statvfs
        self._files = [] if self.path is None else [_Watched(self.path + suffix) for suffix in WATCHED_SUFFIXES]
        self._lost: StoreProblem | None = None
        self._disk: StoreProblem | None = None
        self._disk_at = float("-inf")
        self._write: StoreProblem | None = None
        self._write_at = float("-inf")
        self._problem: StoreProblem | None = None
        self.check()

    @property
    def problem(self) -> StoreProblem | None:
        """The verdict of the last ``check()`` (None: the store is fine)."""
        return self._problem

    def check(self) -> StoreProblem | None:
        """Look again (microseconds) and return the current problem, logging when it changes."""
        if self._lost is None:
            self._lost = self._files_problem()
        problem = self._lost or self._disk_problem() or self._write_problem()
        self._report(problem)
        self._problem = problem
        return problem

    def ensure_ok(self) -> None:
        """Raise ``StoreUnavailableError`` unless ``check()`` finds the store fine."""
        problem = self.check()
        if problem is not None:
            raise StoreUnavailableError(problem)

    def note_write_error(self, error: BaseException) -> bool:
        """Hold ingest for ``hold_s`` if ``error`` says the disk or file is failing; whether it did."""
        reason = write_failure(error)
        if reason is None:
            return False
        if isinstance(error, StoreUnreachableError):
            self._write = StoreProblem(kind=ProblemKind.UNREACHABLE, message=str(error))
        else:
            self._write = StoreProblem(kind=ProblemKind.WRITE_FAILED, message=f"a job store write failed: {reason}")
        self._write_at = self._clock()
        self._disk_at = float("-inf")  # look at the disk now: a full one is the likeliest cause
        self.check()
        return True

    def close(self) -> None:
        """Close the descriptors that follow the files (after the store is closed)."""
        for watched in self._files:
            watched.close()

    def _files_problem(self) -> StoreProblem | None:
        for watched in self._files:
            problem = self._file_problem(watched)
            if problem is not None:
                return problem
        return None

    def _file_problem(self, watched: _Watched) -> StoreProblem | None:
        try:
            now = os.stat(watched.path)
        except FileNotFoundError:
            if watched.identity is None:
                return None  # not created yet: SQLite makes a -wal on first use
            what = "was deleted" if watched.unlinked() else "was deleted or moved"
            return _lost(ProblemKind.DELETED, watched.path, what)
        except OSError as error:
            return StoreProblem(kind=ProblemKind.INACCESSIBLE, message=f"cannot stat {watched.path}: {error.strerror}")
        if watched.identity is None:
            watched.adopt(now)
        elif _identity(now) != watched.identity:
            what = "was deleted and another file took its name" if watched.unlinked() else "was replaced"
            return _lost(ProblemKind.REPLACED, watched.path, what)
        return None

    def _disk_problem(self) -> StoreProblem | None:
        if self.path is None:
            return None  # the database server's disk: not ours to see
        # statvfs is cheap on a local disk but not on every filesystem: once a second is enough.
        now = self._clock()
        if now - self._disk_at >= FREE_SPACE_EVERY_S:
            self._disk_at = now
            self._disk = self._measure_disk()
        return self._disk

    def _measure_disk(self) -> StoreProblem | None:
        directory = os.path.dirname(self.path or ".")
        try:
            stats = self._statvfs(directory)
        except OSError as error:
            return StoreProblem(kind=ProblemKind.INACCESSIBLE, message=f"cannot stat {directory}: {error.strerror}")
        if stats.f_flag & os.ST_RDONLY:
            return StoreProblem(kind=ProblemKind.READ_ONLY, message=f"the filesystem of {directory} is read-only")
        free = stats.f_bavail * stats.f_frsize  # what a non-root writer may still use
        if free < self.min_free_bytes:
            kept = _mib(self.min_free_bytes)
            message = f"{_mib(free)} free on the filesystem of {directory}, below the {kept} kept free"
            return StoreProblem(kind=ProblemKind.LOW_DISK, message=message)
        return None

    def _write_problem(self) -> StoreProblem | None:
        if self._write is not None and self._clock() - self._write_at >= self.hold_s:
            self._write = None  # the next commit tries again, and holds ingest anew if it fails
        return self._write

    def _report(self, problem: StoreProblem | None) -> None:
        """One log line when the verdict changes kind (a low-disk message changes every second)."""
        if _kind(self._problem) == _kind(problem):
            return
        if problem is None:
            log.info("job store usable again: acknowledging ingest again", extra={"store": self.label})
            return
        then = (
            "until serve is restarted (jobs already queued are still delivered from the open file)"
            if problem.restart_needed
            else "until this clears"
        )
        log.error(
            f"job store unavailable: {problem.message}; ingest answers 503 and /readyz is not ready {then}",
            extra={"store": self.label, "problem": str(problem.kind), "restart_needed": problem.restart_needed},
        )


def write_failure(error: BaseException) -> str | None:
    """Why ``error`` means the store's file, disk or server is failing (None: it does not, e.g. a busy lock)."""
    if isinstance(error, StoreUnreachableError):
        return error.reason
    if isinstance(error, sqlite3.Error):
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None and code & 0xFF in _SQLITE_FAILURES:
            name = getattr(error, "sqlite_errorname", None) or _SQLITE_FAILURES[code & 0xFF]
            return f"{error} ({name})"
        return None
    if isinstance(error, OSError) and error.errno in _OS_FAILURES:
        return f"{error.strerror} ({errno.errorcode.get(error.errno or 0, error.errno)})"
    return None


def _lost(kind: ProblemKind, path: str, what: str) -> StoreProblem:
    return StoreProblem(
        kind=kind, message=f"the job store file {path} {what} while serve had it open", restart_needed=True
    )


def _identity(stat: os.stat_result) -> _Identity:
    return _Identity(stat.st_dev, stat.st_ino)


def _kind(problem: StoreProblem | None) -> ProblemKind | None:
    return None if problem is None else problem.kind


def _mib(size: int) -> str:
    return f"{size / 1024 / 1024:,.1f} MiB"
